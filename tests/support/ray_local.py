"""A local Ray instance for the Ray engine's tests: 2 CPUs, loopback, this checkout on the workers' path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def local_ray() -> Iterator[Any]:
    """Start Ray (``num_cpus=2``), yield the module, shut it down; skips when ray is not installed."""
    try:
        import ray
    except ImportError:
        require(False, "ray is not installed (pip install 'cnn-interp[ray]')")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
