"""Torch intra-op threads per computation: one thread for work too small to share.

Torch splits an op over its threads only when the op has at least ``GRAIN_SIZE`` elements
(``at::internal::GRAIN_SIZE``); oneDNN's convolutions split regardless. The service runs each
request on a pool thread, and every thread that computes with several torch threads owns an
OpenMP team: with the teams of several threads alive, libgomp stops spin-waiting (more OpenMP
threads than cores), so each parallel region pays a futex wake-up. For a LeNet step (6 x 28 x 28
values at most) that wake-up costs more than the split saves: measured with 2 torch threads, a
LeNet VisualizeFilter step took 4.0 ms on a fresh thread with 2 threads and 2.4 ms on the same
thread with 1 (2.5 / 2.2 ms on the main thread). So a computation whose largest activation,
over all images it computes at once, stays below ``GRAIN_SIZE`` runs on one thread; others keep
the server's setting (``--torch-threads``). The iterative benchmark's images stayed bit-identical
to the raw loop's at 2 threads (max abs difference 0) until LeNet's convolutions took torch's
native kernel on one thread (:class:`models.lenet.Conv2d`): now they differ by float rounding
(at most 2.4e-6 for a VisualizeFilter image).

``torch.set_num_threads`` sets the calling thread's OpenMP thread count, and also the count a
thread takes the first time it computes. So :func:`threads_for` restores it on exit, and the
server's thread pools start every thread with :func:`pin` (the server's count), so that a
thread first computing while another is inside :func:`threads_for` still gets the server's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

GRAIN_SIZE = 32768


def largest_activation(shapes: Sequence[tuple[int, ...]], native_side: int, side: int, images: int) -> int:
    """Values in the largest of a model's per-image layer outputs (``shapes``, at ``native_side``
    px), for ``images`` inputs of ``side`` px: spatial outputs scale with the input's area."""
    largest = 0
    for shape in shapes:
        n = math.prod(shape)
        if len(shape) == 3:
            n = math.ceil(n * (side / native_side) ** 2)
        largest = max(largest, n)
    return largest * images


@contextmanager
def threads_for(elements: int) -> Iterator[None]:
    """The block computes on one torch thread when ``elements`` (its largest activation) is below
    ``GRAIN_SIZE`` and > 0; otherwise, or when the thread already has one, it is left alone."""
    before = torch.get_num_threads()
    if elements <= 0 or elements >= GRAIN_SIZE or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pin(threads: int) -> Callable[[], None]:
    """A thread pool's initializer: the new thread computes with ``threads`` torch threads."""

    def initializer() -> None:
        torch.set_num_threads(threads)

    return initializer
