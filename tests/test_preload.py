"""`serve --workers N` parses the config file's specs once, in the parent, before it
forks: each worker's first build takes the parsed specs from there."""

from __future__ import annotations

import gc
import json
from pathlib import Path

from test_admin_api import PETS_SPEC

from runmcp_fast.config import GatewayConfig, config_from_data
from runmcp_fast.preload import preload_specs, take_specs
from runmcp_fast.snapshot import build_snapshot


def test_the_parents_specs_are_the_first_builds(tmp_path: Path) -> None:
    (tmp_path / "pets.json").write_text(json.dumps(PETS_SPEC))
    config = config_from_data(
        {
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": [
                {"name": "pets", "upstream": "http://127.0.0.1:1", "openapi": "pets.json"},
                {"name": "inline", "upstream": "http://127.0.0.1:1", "openapi": PETS_SPEC,
                 "prefix": "/inline"},
                {"name": "broken", "upstream": "http://127.0.0.1:1", "openapi": "missing.json",
                 "prefix": "/broken"},
                {"name": "plain", "upstream": "http://127.0.0.1:1", "prefix": "/plain"},
            ],
        },
        base_dir=str(tmp_path),
    )  # fmt: skip
    try:
        assert preload_specs(config) == 2  # the missing file is left for the build to report
        specs = take_specs()
        parsed = {id(spec) for spec in specs._specs.values()}
        assert len(take_specs()) == 0, "taken once"
        # The worker's build (its own config, read again) finds the parsed spec.
        pets = config_from_data(
            {"listeners": [{"address": "127.0.0.1:0"}], "services": [
                {"name": "pets", "upstream": "http://127.0.0.1:1", "openapi": "pets.json"}]},
            base_dir=str(tmp_path),
        )  # fmt: skip
        compiled = specs._compiled[("", "pets")]
        assert compiled.validators, "the parent compiled the contract"
        snapshot = build_snapshot(pets, lambda u: None, specs=specs)
        service = snapshot.services[0]
        assert id(service.spec) in parsed
        # ... and what the parent compiled from it, bound to the worker's own replicas.
        assert service is not compiled and service.replicas is not compiled.replicas
        assert service.validators is compiled.validators
        assert service.mcp_endpoint is compiled.mcp_endpoint is not None
        assert not specs._compiled, "taken once"
    finally:
        gc.unfreeze()


def test_a_service_changed_since_the_preload_is_compiled_again(tmp_path: Path) -> None:
    (tmp_path / "pets.json").write_text(json.dumps(PETS_SPEC))

    def config(mode: str) -> GatewayConfig:
        return config_from_data(
            {"listeners": [{"address": "127.0.0.1:0"}], "services": [
                {"name": "pets", "upstream": "http://127.0.0.1:1", "openapi": "pets.json",
                 "validation": {"mode": mode}}]},
            base_dir=str(tmp_path),
        )  # fmt: skip

    try:
        preload_specs(config("on"))
        specs = take_specs()
        compiled = specs._compiled[("", "pets")]
        snapshot = build_snapshot(config("report"), lambda u: None, specs=specs)
        service = snapshot.services[0]
        assert service.validators and service.validators is not compiled.validators
        assert all(v.mode == "report" for v in service.validators.values())
    finally:
        gc.unfreeze()
