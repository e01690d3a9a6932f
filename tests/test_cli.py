"""The `runmcp-fast` command line: `routes` and `check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runmcp_fast.cli import main

ROOT = Path(__file__).resolve().parents[1]
PETSTORE = str(ROOT / "examples" / "petstore.yaml")
SPECS = ROOT / "tests" / "specs"


def test_routes_prints_every_operation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", PETSTORE]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["METHOD", "TEMPLATE", "OPERATION", "HOST"]
    assert lines[1].split() == ["GET", "/v1/owners", "listOwners", "*"]
    assert ["DELETE", "/v1/pets/{petId}", "deletePet", "*"] in [line.split() for line in lines]
    assert "9 routes from" in out
    assert "base path /v1" in out


def test_routes_with_host_and_base_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", PETSTORE, "--host", "pets.example.com", "--base-path", "/api"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["GET", "/api/pets/{petId}", "showPetById", "pets.example.com"] in rows


def test_routes_tree_shows_the_trie(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", PETSTORE, "--tree"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("every host (9 routes)\n")
    assert "=> PUT /v1/pets/{petId} -> 'updatePet'" in out
    assert "{param}" in out


def test_bad_spec_is_reported_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", str(SPECS / "broken.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "broken.yaml#/paths/pets: path 'pets' does not start with '/'" in err
    assert err.count("error: ") > 5


def test_missing_file_names_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "/nonexistent/spec.yaml"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/spec.yaml" in err
    assert "can not read the file" in err


def test_check_reports_each_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", PETSTORE, str(SPECS / "broken.yaml")]) == 1
    captured = capsys.readouterr()
    assert f"ok: {PETSTORE}: 9 routes" in captured.out
    assert "broken.yaml#/paths/~1pets/parameters/0: parameter has no 'in'" in captured.err


def test_check_passes_on_good_specs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", PETSTORE]) == 0
    assert capsys.readouterr().err == ""


def test_console_script_runs() -> None:
    # The real entry point, as the README's `make run` uses it.
    proc = subprocess.run(
        [sys.executable, "-m", "runmcp_fast.cli", "routes", PETSTORE],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "showPetById" in proc.stdout
