"""Console entry points of the server side (``interp-server``, ``interp-train``), import-light.

The base install is the SDK and CLI only; torch, torchvision, captum and OpenCV come with the
``server`` extra. These launchers check for the server side's packages before importing it, so
a client-only install answers ``interp-server`` with the command that fixes it, not a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

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


def serve() -> None:
    """``interp-server``: see ``server.app.main``."""
    require_server_extra("interp-server")
    from server.app import main

    main()


def train() -> int:
    """``interp-train``: see ``models.train_lenet.main``."""
    require_server_extra("interp-train")
    from models.train_lenet import main

    return main()


def index() -> int:
    """``interp-index``: see ``server.index_command.main``."""
    require_server_extra("interp-index")
    from server.index_command import main

    return main()


def atlas() -> int:
    """``interp-atlas``: see ``server.atlas_command.main``."""
    require_server_extra("interp-atlas")
    from server.atlas_command import main

    return main()


def robustness() -> int:
    """``interp-robustness``: see ``server.robustness_command.main``."""
    require_server_extra("interp-robustness")
    from server.robustness_command import main

    return main()
