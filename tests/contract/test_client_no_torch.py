"""The SDK and CLI stay light: importing them never pulls in torch, OpenCV or the server side."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ["torch", "torchvision", "captum", "cv2", "interp", "models", "server"]
#: The one client module allowed OpenCV: `interp watch`'s video code (the `video` extra).
VIDEO = "client.video"


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_client_leaves_torch_and_the_server_side_out():
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "client").rglob("*.py")
        if path != ROOT / "client" / "video.py"
    )
    assert len(modules) > 10 and VIDEO not in modules and "client.results.datasets" in modules
    assert _loaded_after("import " + ", ".join(modules)) == []


def test_building_the_cli_and_a_client_leaves_torch_out():
    code = (
        "from client.cli import build_parser\n"
        "from client import InterpClient\n"
        "build_parser().parse_args(['models'])\n"
        "InterpClient('127.0.0.1:1').close()\n"
    )
    assert _loaded_after(code) == []


def test_client_sources_import_only_allowed_packages():
    # A static check too, so that a lazy import inside a function cannot slip through.
    allowed = {"grpc", "grpc_status", "google", "numpy", "protos", "tqdm", "client", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    paths = sorted((ROOT / "client").rglob("*.py"))
    assert ROOT / "client" / "results" / "_build.py" in paths
    for path in paths:
        if path == ROOT / "client" / "video.py":
            continue  # VIDEO: OpenCV, checked by the import contract's one exception
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in stdlib, f"{path.name}:{node.lineno} imports {name}"
