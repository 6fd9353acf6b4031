"""The configuration of the tests' real in-process servers (port 0, loopback).

vgg16 and alexnet run with seeded random weights (ImageNet weights cannot be downloaded here);
lenet serves its committed, trained checkpoint. The shared session server built from
``test_config()`` is the ``server`` fixture of tests/conftest.py; a test that needs its own server
(other limits, TLS, a token) builds one from ``test_config(**overrides)``.
"""

from __future__ import annotations

from server.config import Limits, ServerConfig


def test_config(**overrides) -> ServerConfig:
    base = dict(
        host="127.0.0.1",
        port=0,
        random_weights=True,
        download_weights=False,  # never the network (tests/integration/test_weights_download.py uses a local mirror)
        worker_threads=8,
        limits=Limits(max_concurrent_heavy=2, max_queued_heavy=8, default_deadline_s=300.0),
    )
    base.update(overrides)
    return ServerConfig(**base)


test_config.__test__ = False  # a factory, not a test
