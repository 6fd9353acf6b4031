"""The micro-batcher (server/batcher.py): batch formation, order, the delay bound, cancellation.

Counted, never timed: a fake clock decides when the batch delay has passed, the batch computation
blocks on an event the test releases, and each test waits for states (a call queued, a batch
computing, a thread ended) with a generous bound that only a hang reaches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from interp.errors import Cancelled
from server.batcher import Batcher
from server.capacity import CapacityGate

HANG_S = 60.0
KIND = ("Classify", "m")
KEY = (KIND, "logits")


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached: a hang")
        time.sleep(0.002)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A batch computation that records each batch's members; with ``block``, batch i waits for
    ``release(i)``."""

    def __init__(self, block: bool = False) -> None:
        self.block = block
        self.batches: list[list[int]] = []
        self.holds: list[threading.Event] = []
        self.entered = threading.Semaphore(0)
        self.stop_asked: list[bool] = []
        self.threads: list[threading.Thread] = []  # the thread that computed each batch
        self._lock = threading.Lock()

    def release(self, index: int) -> None:
        wait_for(lambda: len(self.holds) > index)
        self.holds[index].set()

    def __call__(self, x: torch.Tensor, extras: Sequence[Any], should_stop: Callable[[], bool]) -> list:
        hold = threading.Event()
        if not self.block:
            hold.set()
        with self._lock:
            self.batches.append(list(extras))
            self.holds.append(hold)
            self.threads.append(threading.current_thread())
        self.entered.release()
        if not hold.wait(HANG_S):
            raise RuntimeError("never released")
        self.stop_asked.append(should_stop())
        return [x[i] * 2 for i in range(x.shape[0])]


class Caller:
    """One call on its own thread: ``result`` or ``error`` once ``thread`` ends."""

    def __init__(self, batcher: Batcher, n: int, compute: Recorder, *, slot: Any = None) -> None:
        self.n = n
        self.wanted = True
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(batcher, compute, slot), daemon=True)
        self.thread.start()

    def _run(self, batcher: Batcher, compute: Recorder, slot: Any) -> None:
        try:
            x = torch.full((1, 1, 2, 2), float(self.n))
            self.result = batcher.run(KIND, KEY, x, self.n, compute, still_wanted=lambda: self.wanted, slot=slot)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc

    def join(self) -> None:
        self.thread.join(HANG_S)
        assert not self.thread.is_alive(), "call never returned"


def test_a_lone_call_starts_at_once_without_waiting_for_the_delay() -> None:
    clock = FakeClock()  # frozen: a call that waited for the delay would never start
    batcher = Batcher(8, 10.0, clock)
    compute = Recorder()
    call = Caller(batcher, 1, compute)
    call.join()
    assert compute.batches == [[1]] and torch.equal(call.result, torch.full((1, 2, 2), 2.0))


def test_calls_queued_behind_a_batch_form_the_next_batch_in_arrival_order() -> None:
    batcher = Batcher(3, 10.0, FakeClock())
    compute = Recorder(block=True)
    first = Caller(batcher, 0, compute)
    compute.entered.acquire(timeout=HANG_S)  # batch [0] computes ...
    calls = []
    for n in range(1, 6):  # ... while five more arrive, one after the other
        calls.append(Caller(batcher, n, compute))
        wait_for(lambda n=n: batcher.pending(KEY) == n)
    for i in range(3):
        compute.release(i)
    for call in [first, *calls]:
        call.join()
    # Oldest first, at most max_size: none is overtaken, and when at most max_size calls wait,
    # each is in the very next batch (here 1..3 wait one batch, 4..5 two: the queue held 5 > 3).
    assert compute.batches == [[0], [1, 2, 3], [4, 5]]
    assert [int(c.result.flatten()[0]) for c in calls] == [2, 4, 6, 8, 10]
    assert batcher.stats.batches == 3 and batcher.stats.largest == 3 and batcher.pending() == 0


def test_the_head_waits_for_a_call_on_its_way_at_most_the_delay() -> None:
    clock = FakeClock()
    batcher = Batcher(4, 0.002, clock)
    compute = Recorder()
    with batcher.arriving(KIND):  # another call of this kind is decoding its image
        call = Caller(batcher, 1, compute)
        wait_for(lambda: batcher.pending(KEY) == 1)
        clock.now += 0.001  # half the delay: still waiting for its companion
        batcher.wake()
        time.sleep(0.05)  # a chance to start wrongly (no timing is asserted)
        assert compute.batches == [] and batcher.pending(KEY) == 1
        clock.now += 0.0011  # past the delay: it starts without the companion
        batcher.wake()
        call.join()
    assert compute.batches == [[1]]


def test_a_call_on_its_way_joins_the_batch() -> None:
    clock = FakeClock()  # frozen: only the companion's arrival can start the batch
    batcher = Batcher(4, 0.002, clock)
    compute = Recorder()
    with batcher.arriving(KIND) as arrived:
        first = Caller(batcher, 1, compute)
        wait_for(lambda: batcher.pending(KEY) == 1)
        with batcher.arriving(KIND) as arrived_second:
            arrived()  # the first call's own count ends when it reaches the batcher, as in the servicer
            second = Caller(batcher, 2, compute)
            wait_for(lambda: batcher.pending(KEY) == 2)
            arrived_second()
        first.join()
        second.join()
    assert compute.batches == [[1, 2]]


def test_a_queued_call_that_is_cancelled_leaves_the_queue() -> None:
    gate = CapacityGate(1, 4)
    batcher = Batcher(4, 10.0, FakeClock())
    compute = Recorder(block=True)
    slot = lambda wanted: gate.slot(wanted)  # noqa: E731
    first = Caller(batcher, 0, compute, slot=slot)
    compute.entered.acquire(timeout=HANG_S)
    queued = Caller(batcher, 1, compute, slot=slot)
    wait_for(lambda: batcher.pending(KEY) == 1)
    queued.wanted = False
    queued.join()  # returns while the first batch still computes
    assert isinstance(queued.error, Cancelled) and batcher.pending() == 0
    assert first.thread.is_alive()
    compute.release(0)
    first.join()
    assert compute.batches == [[0]] and gate.running == 0 and not batcher.computing(KEY)


def test_a_computing_call_that_is_cancelled_returns_and_the_batch_finishes_for_the_others() -> None:
    gate = CapacityGate(1, 4)
    batcher = Batcher(4, 10.0, FakeClock())
    compute = Recorder(block=True)
    slot = lambda wanted: gate.slot(wanted)  # noqa: E731
    blocker = Caller(batcher, 0, compute, slot=slot)
    compute.entered.acquire(timeout=HANG_S)
    calls = [Caller(batcher, n, compute, slot=slot) for n in (1, 2)]
    wait_for(lambda: batcher.pending(KEY) == 2)
    compute.release(0)
    compute.entered.acquire(timeout=HANG_S)  # batch [1, 2] computes on one of the two calls' threads
    blocker.join()
    # Which call's thread computes is the scheduler's choice: ask the recorder, cancel the other.
    computing = next(c for c in calls if c.thread is compute.threads[1])
    other = next(c for c in calls if c is not computing)
    other.wanted = False  # the call whose batch computes on another thread
    other.join()  # returns while the batch still computes
    assert isinstance(other.error, Cancelled) and computing.thread.is_alive()
    compute.release(1)
    computing.join()
    assert computing.error is None and int(computing.result.flatten()[0]) == 2 * computing.n
    assert gate.running == 0 and batcher.pending() == 0 and not batcher.computing(KEY)


def test_a_batch_nobody_wants_is_told_to_stop_and_frees_its_slot() -> None:
    gate = CapacityGate(1, 4)
    batcher = Batcher(4, 10.0, FakeClock())
    compute = Recorder(block=True)
    call = Caller(batcher, 0, compute, slot=lambda wanted: gate.slot(wanted))
    compute.entered.acquire(timeout=HANG_S)
    call.wanted = False  # the computing call itself: it returns when its pass does
    compute.release(0)
    call.join()
    assert compute.stop_asked == [True] and gate.running == 0


def test_an_error_reaches_every_call_of_the_batch() -> None:
    batcher = Batcher(4, 10.0, FakeClock())
    gate = threading.Event()

    def failing(x: torch.Tensor, extras: Sequence[Any], should_stop: Callable[[], bool]) -> list:
        gate.wait(HANG_S)
        raise ValueError("boom")

    compute = Recorder(block=True)
    first = Caller(batcher, 0, compute)
    compute.entered.acquire(timeout=HANG_S)
    calls = [Caller(batcher, n, failing) for n in (1, 2)]  # type: ignore[arg-type]
    wait_for(lambda: batcher.pending(KEY) == 2)
    compute.release(0)
    gate.set()
    for call in [first, *calls]:
        call.join()
    assert first.error is None
    assert all(isinstance(c.error, ValueError) for c in calls)
