"""What `runmcp-fast check` says about a contract: what is checked, and by which validator."""

from __future__ import annotations

from collections.abc import Iterable

from runmcp_fast.validation.operation import OperationValidator

_SHOWN = 20


def contract_summary(label: str, validators: Iterable[OperationValidator]) -> list[str]:
    """One line for `label`, then one per operation the fallback validator helps check.

    The fallback (the `jsonschema` library, for keywords msgspec can not
    express) is correct but slower: these are the operations to look at when
    validation shows in a profile.
    """
    checked = list(validators)
    slow = [v for v in checked if v.fallbacks]
    modes = sorted({v.mode for v in checked})
    lines = [
        f"{label}: {len(checked)} operation{'' if len(checked) == 1 else 's'} validated"
        f" ({', '.join(modes) or 'none'}), {len(slow)} partly by the fallback validator"
    ]
    for v in slow[:_SHOWN]:
        reasons = sorted({f"{f.keyword} at {f.pointer}" for f in v.fallbacks})
        more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
        lines.append(f"  fallback: {v.name}: {'; '.join(reasons[:3])}{more}")
    if len(slow) > _SHOWN:
        lines.append(f"  ... and {len(slow) - _SHOWN} more operations")
    return lines
