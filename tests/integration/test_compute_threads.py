"""The torch threads a request computes with (server.threads), seen from inside the method.

A LeNet-sized step (one image: 4,704 values at most) computes on one torch thread on its worker;
work above torch's grain size (16 channels x 2 restarts) keeps the server's count; either way the
worker's count is the server's again afterwards. The methods are wrapped to record
``torch.get_num_threads()`` on the thread that computes; nothing is timed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from client import InterpClient
from server.app import create_server
from server.handlers import attribution, synthesis
from tests.support.servers import test_config


@pytest.fixture(scope="module")
def two_thread_server() -> Iterator[str]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the server's count: its pool threads start with it
    srv, port = create_server(test_config(models=("lenet",)))
    srv.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        srv.stop(None)
        torch.set_num_threads(before)


def _recording(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    seen: list[int] = []
    original = getattr(module, name)

    def wrapped(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return seen


def test_small_steps_compute_on_one_thread_large_ones_on_the_servers(two_thread_server, monkeypatch) -> None:
    seen = _recording(monkeypatch, synthesis, "compute_visualization")
    with InterpClient(two_thread_server) as client:
        client.visualize_filter("lenet", "conv2", [0], steps=2, restarts=1)
        client.visualize_filter("lenet", "conv2", list(range(16)), steps=2, restarts=2)  # 32 x 4,704 values
        client.visualize_filter("lenet", "conv2", [3], steps=2, restarts=1)
    assert seen == [1, 2, 1]


def test_deepdream_on_a_small_image_computes_on_one_thread(two_thread_server, monkeypatch) -> None:
    seen = _recording(monkeypatch, synthesis, "deepdream")
    image = (np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) * 7) % 255
    with InterpClient(two_thread_server) as client:
        client.dream(image, model="lenet", layers={"conv2": 1.0}, octaves=1, iterations=2)
        result = client.dream(image, model="lenet", layers={"conv2": 1.0}, octaves=1, iterations=2)
    assert seen == [1, 1]
    assert result.image.shape == (28, 28, 1)


def test_saliency_counts_the_copies_of_the_input_one_pass_holds(two_thread_server, monkeypatch) -> None:
    seen = _recording(monkeypatch, attribution, "compute_saliency")
    image = np.full((28, 28), 128, dtype=np.uint8)
    with InterpClient(two_thread_server) as client:
        client.saliency(image, model="lenet", method="gradient")  # 1 image
        client.saliency(image, model="lenet", method="smoothgrad", samples=16, batch_size=16)  # 16 copies
        client.saliency([image] * 8, model="lenet", method="gradient")  # 8 images: 37,632 values
    assert seen == [1, 2, 2]
