"""Console entry points of the server side (``interp-server``, ``interp-train``, the offline jobs), import-light.

The base install is the SDK and CLI only; torch, torchvision, captum and OpenCV come with the
``server`` extra. These launchers check for the server side's packages before importing it, so
a client-only install answers ``interp-server`` with the command that fixes it, not a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

# import name -> distribution that provides it (all in the ``server`` extra of pyproject.toml)
SERVER_MODULES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "captum": "captum",
    "cv2": "opencv-python-headless",
    "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection",
    "prometheus_client": "prometheus-client",
}
INSTALL_HINT = "pip install 'cnn-interp[server]'  (from a checkout: pip install '.[server]')"


def missing_server_packages() -> list[str]:
    """Distributions of the ``server`` extra whose modules cannot be imported here."""
    return [dist for module, dist in SERVER_MODULES.items() if importlib.util.find_spec(module) is None]


def require_server_extra(command: str) -> None:
    """Exit (status 1) with one clear line naming the extra when the server side is not installed."""
    missing = missing_server_packages()
    if missing:
        sys.exit(f"{command} needs the server extra (missing: {', '.join(missing)}); install it with: {INSTALL_HINT}")


def _launcher(command: str, module: str) -> Callable[[], Any]:
    """The entry point of ``command``: the server extra checked, then ``module.main()`` (imported
    only then, so that a client-only install never imports the server side)."""

    def launch() -> Any:
        require_server_extra(command)
        # gRPC core's own INFO lines ("Handshake failed" for every plaintext client of a TLS server)
        # would reach stderr outside the log's format (one JSON object a line): errors only, unless
        # the operator asks for more. Read once, when grpc is first imported: that is next.
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        return importlib.import_module(module).main()

    launch.__doc__ = f"``{command}``: see ``{module}.main``."
    return launch


serve = _launcher("interp-server", "server.app")
train = _launcher("interp-train", "models.train_lenet")
index = _launcher("interp-index", "server.index_command")
atlas = _launcher("interp-atlas", "server.atlas_command")
robustness = _launcher("interp-robustness", "server.robustness_command")
