"""Torch threads per computation (server.threads): one thread below torch's grain size, restored
after; pool threads start with the server's count even while another thread is inside the block.
Event-driven, never timed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from models.catalogue import layer_catalogue
from models.lenet import build_lenet
from server.threads import GRAIN_SIZE, largest_activation, pin, threads_for


@pytest.fixture()
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_small_work_runs_on_one_thread_and_the_count_comes_back(two_threads):
    with threads_for(GRAIN_SIZE - 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    for large_or_unknown in (GRAIN_SIZE, 10**9, 0):
        with threads_for(large_or_unknown):
            assert torch.get_num_threads() == 2
    with pytest.raises(ValueError), threads_for(10):
        raise ValueError("inside")
    assert torch.get_num_threads() == 2


def test_a_pool_thread_started_inside_the_block_gets_the_servers_count(two_threads):
    inside, release = threading.Event(), threading.Event()

    def small_work() -> None:
        with threads_for(100):
            inside.set()
            release.wait(30)

    worker = threading.Thread(target=small_work)
    worker.start()
    assert inside.wait(30)
    try:
        # The hazard: torch.set_num_threads also sets what a new thread takes when it first computes.
        plain: list[int] = []
        other = threading.Thread(target=lambda: plain.append(torch.get_num_threads()))
        other.start()
        other.join()
        with ThreadPoolExecutor(1, initializer=pin(2)) as pool:
            pinned = pool.submit(torch.get_num_threads).result()
    finally:
        release.set()
        worker.join()
    assert plain == [1]  # what pin() is for
    assert pinned == 2
    assert torch.get_num_threads() == 2


def test_largest_activation_scales_maps_with_the_area_not_vectors():
    lenet = build_lenet()
    shapes = [info.output_shape for info in layer_catalogue(lenet, (1, 28, 28), {})]
    assert largest_activation(shapes, 28, 28, 1) == 6 * 28 * 28  # conv1
    assert largest_activation(shapes, 28, 56, 2) == 2 * 6 * 56 * 56
    assert largest_activation([(84,), (10,)], 28, 280, 3) == 3 * 84
