"""Regenerate the committed Python stubs from protos/interp.proto.

Run from anywhere: ``python -m protos.generate`` (or ``make protos``). The generator version is
pinned (requirements.lock) and checked here, so the committed stubs are reproducible;
tests/unit/test_protos.py regenerates into a temporary directory and diffs.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

GRPCIO_TOOLS_VERSION = "1.85.1"
ROOT = Path(__file__).resolve().parent.parent
PROTO = "protos/interp.proto"


def generate(out_dir: Path) -> None:
    """Write interp_pb2.py, interp_pb2.pyi and interp_pb2_grpc.py under out_dir/protos/."""
    from grpc_tools import protoc

    found = version("grpcio-tools")
    if found != GRPCIO_TOOLS_VERSION:
        raise SystemExit(f"grpcio-tools {GRPCIO_TOOLS_VERSION} required to generate stubs, found {found}")
    (out_dir / "protos").mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
