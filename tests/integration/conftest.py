"""A real in-process server on port 0, shared by the integration tests (SDK, CLI, raw stubs).

vgg16 and alexnet run with seeded random weights (ImageNet weights cannot be downloaded here);
lenet serves its committed, trained checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from server.app import create_server
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


@pytest.fixture(scope="session")
def server() -> Iterator[tuple[object, str]]:
    srv, port = create_server(test_config())
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(grace=None)


@pytest.fixture(scope="session")
def target(server) -> str:
    """ "127.0.0.1:PORT" of the shared real server."""
    return server[1]


@pytest.fixture(scope="session")
def channel(target) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel):
    from protos import interp_pb2_grpc

    return interp_pb2_grpc.InterpStub(channel)
