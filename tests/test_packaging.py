"""
Test the packaging glue: version, entry points, and CI/README agreement.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import dataplane
from dataplane import cli

ROOT = Path(__file__).resolve().parents[1]


def test_version_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["version"] == dataplane.__version__ == "0.1.0"
    assert meta["project"]["scripts"]["dataplane"] == "dataplane.cli:main"


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == "dataplane 0.1.0"


def test_python_dash_m_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "dataplane", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "dataplane 0.1.0"
    out = subprocess.run(
        [sys.executable, "-m", "dataplane", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: dataplane" in out.stdout


def test_console_script_version():
    script = Path(sys.executable).with_name("dataplane")
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "dataplane 0.1.0"


def test_native_module_is_built_inside_the_package():
    import dataplane._native as native

    assert Path(native.__file__).parent == Path(dataplane.__file__).parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].endswith("dataplane demo") and "pytest" in lines[1]
    # Both make (or reuse) the same virtual environment: PEP 668 machines refuse pip outside one.
    assert all(line.startswith("python3 -m venv .venv && .venv/bin/python -m pip install -e ") for line in lines)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    extract = next(line for line in ci if line.startswith("test_command="))
    found = subprocess.run(["bash", "-c", extract + '; printf %s "$test_command"'], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout
    assert found == lines[1]
    assert 'bash -c "$test_command"' in ci


def test_sdist_manifest_ships_native_sources():
    assert "graft native" in (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    assert 'cffi_modules=["native/build.py:ffibuilder"]' in (ROOT / "setup.py").read_text(
        encoding="utf-8"
    )
