"""Package boundaries: the base install (SDK + CLI) resolves without torch, torchvision, captum or
OpenCV; the server side is the ``server`` extra, and its launchers say so when it is missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
HEAVY = {"torch", "torchvision", "captum", "opencv-python-headless", "opencv-python", "triton"}
# Everything a client install may bring: the direct dependencies and what they pull in.
LIGHT = {
    *("cnn-interp", "grpcio", "grpcio-status", "protobuf", "numpy", "tqdm"),
    *("googleapis-common-protos", "typing-extensions"),
}
NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Network is unreachable"
)


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    names = [*PROJECT["dependencies"]]
    for extra in extras:
        names += PROJECT["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


def _closure(extras: tuple[str, ...]) -> set[str]:
    """Distributions an install of this project with ``extras`` pulls in, walked through the
    metadata of the installed (locked) packages, markers evaluated for this interpreter."""
    seen: set[str] = {"cnn-interp"}
    visited: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(req, "") for req in _requirements(extras)]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name, wanted = canonicalize_name(req.name), tuple(sorted(req.extras))
        if (name, wanted) in visited:
            continue
        visited.add((name, wanted))
        if name == "cnn-interp":  # a self-reference such as dev -> cnn-interp[server]
            todo += [(r, "") for r in _requirements(wanted)]
            continue
        seen.add(name)
        dist = metadata.distribution(name)  # PackageNotFoundError: the lock lacks a dependency
        for line in dist.requires or []:
            todo += [(Requirement(line), sub_extra) for sub_extra in ("", *wanted)]
    return seen


@pytest.mark.parametrize("extras", [(), ("client",)], ids=["base", "client"])
def test_client_install_closure_has_no_server_side(extras: tuple[str, ...]) -> None:
    closure = _closure(extras)
    assert closure <= LIGHT, f"a client install would also bring {sorted(closure - LIGHT)}"
    assert {"grpcio", "grpcio-status", "protobuf", "numpy", "tqdm"} <= closure


def test_server_extra_closure_has_torch_and_everything_the_server_imports() -> None:
    # The same walk finds the heavy packages where they belong: the check above can fail.
    closure = _closure(("server",))
    assert {"torch", "torchvision", "captum", "opencv-python-headless", "grpcio-health-checking"} <= closure
    assert {"grpcio-reflection", "prometheus-client"} <= closure
    assert "cnn-interp" in _closure(("dev",)) and "torch" in _closure(("dev",))


def _project_copy(tmp_path: Path) -> Path:
    """pyproject + README + empty packages: all pip needs for the metadata, nothing it could build into."""
    copy = tmp_path / "cnn-interp"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        (copy / package.replace(".", "/")).mkdir(parents=True, exist_ok=True)  # client.results: client/results
        (copy / package.replace(".", "/") / "__init__.py").touch()
    return copy


@pytest.mark.parametrize("spec", ["{}", "{}[client]"], ids=["base", "client"])
def test_pip_resolves_the_client_install_without_torch(tmp_path: Path, spec: str) -> None:
    """What pip itself would install into an empty environment (dry run: nothing is downloaded
    beyond metadata, and torch never is, since it is not in the resolution)."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation"]
    cmd += ["--quiet", "--disable-pip-version-check", "--report", str(report), spec.format(_project_copy(tmp_path))]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and NETWORK_ERRORS.search(done.stderr):
        require(False, f"no package index reachable: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    resolved = {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    assert not resolved & HEAVY, f"pip would install {sorted(resolved & HEAVY)}"
    assert not any(name.startswith("nvidia-") for name in resolved), sorted(resolved)
    assert resolved <= LIGHT, f"unexpected in a client install: {sorted(resolved - LIGHT)}"
    assert {"cnn-interp", "grpcio", "grpcio-status", "protobuf", "numpy", "tqdm"} <= resolved


def test_console_scripts_point_at_import_light_entry_points() -> None:
    scripts = PROJECT["scripts"]
    assert scripts["interp"] == "client.cli:main"
    assert scripts["interp-server"] == "server.entry_points:serve"
    assert scripts["interp-train"] == "server.entry_points:train"


@pytest.mark.parametrize(("script", "function"), [("interp-server", "serve"), ("interp-train", "train")])
def test_server_launchers_without_the_server_extra_name_it(script: str, function: str) -> None:
    # sys.modules[name] = None makes `import torch` fail and find_spec report it missing,
    # as in an environment where only the client install is present.
    code = (
        "import sys\n"
        "for name in ('torch', 'captum'): sys.modules[name] = None\n"
        f"from server.entry_points import {function}\n"
        f"{function}()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{script} needs the server extra (missing: torch, captum)" in done.stderr
    assert "pip install 'cnn-interp[server]'" in done.stderr


def test_server_launcher_module_is_import_light() -> None:
    code = "import sys, server.entry_points\nprint([m for m in ('torch', 'cv2', 'captum') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_server_launchers_keep_grpc_core_to_errors_before_grpc_loads() -> None:
    """gRPC core reads GRPC_VERBOSITY once, when grpc is first imported: the launcher sets it (unless
    the operator did) before importing the command, so core's INFO lines do not break a JSON log."""
    code = (
        "import os, sys, types\n"
        "module = types.ModuleType('fake_command')\n"
        "module.main = lambda: print(os.environ.get('GRPC_VERBOSITY'), 'grpc' in sys.modules)\n"
        "sys.modules['fake_command'] = module\n"
        "from server.entry_points import _launcher\n"
        "_launcher('interp-fake', 'fake_command')()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.split() == ["ERROR", "False"], done.stderr
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**env, "GRPC_VERBOSITY": "DEBUG"})  # fmt: skip
    assert done.stdout.split() == ["DEBUG", "False"], done.stderr


def test_with_the_server_extra_nothing_is_missing() -> None:
    from server.entry_points import missing_server_packages

    assert missing_server_packages() == []


def test_client_ships_its_type_marker() -> None:
    assert (ROOT / "client" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["client"]
