"""Every console script of pyproject.toml answers ``--help`` and ``--version`` (exit 0, real text).

Run as a user runs them: the installed launcher in the interpreter's bin folder, in a subprocess.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def _run(script: str, flag: str) -> subprocess.CompletedProcess[str]:
    launcher = Path(sys.executable).parent / script
    if not launcher.exists():
        pytest.fail(f"{script} is not installed beside {sys.executable}: run `pip install -e .`", pytrace=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(launcher), flag], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_the_table_of_scripts_is_what_we_ship() -> None:
    assert SCRIPTS == [
        "interp",
        "interp-atlas",
        "interp-index",
        "interp-robustness",
        "interp-server",
        "interp-train",
        "interp-web",
    ]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_every_option(script: str) -> None:
    done = _run(script, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}") and "Traceback" not in done.stderr
    assert "--version" in done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_version_names_the_package_version(script: str) -> None:
    done = _run(script, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{script} {importlib.metadata.version('cnn-interp')}"
