"""Bounded admission for heavy RPCs: at most N computing, at most Q waiting, the rest refused.

A full queue answers RESOURCE_EXHAUSTED at once instead of letting requests pile up until their
deadlines expire; waiting requests give up when their own deadline or cancellation comes first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from interp.errors import Cancelled
from server.errors import Overloaded
from server.interceptors import Metrics


class CapacityGate:
    def __init__(self, max_running: int, max_waiting: int, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.max_running = max_running
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self.running = 0
        self.waiting = 0
        self._queue: list[object] = []

    @contextmanager
    def slot(
        self, still_wanted: Callable[[], bool] = lambda: True, on_queued: Callable[[int], None] | None = None
    ) -> Iterator[None]:
        """Hold one computing slot for the block; raise Overloaded when the queue is full.

        ``on_queued(position)`` hears the caller's 1-based place in the queue when it must wait
        (again whenever the place changes), and 0 when it gets its slot after waiting. A caller
        that stops being wanted while queued gets Cancelled (DEADLINE_EXCEEDED or CANCELLED).
        """
        with self._cond:
            if self.running >= self.max_running:
                if self.waiting >= self.max_waiting:
                    raise Overloaded(
                        f"server busy: {self.running} heavy requests running and {self.waiting} queued "
                        f"(limits max_concurrent_heavy={self.max_running} and max_queued_heavy={self.max_waiting}); "
                        "retry later"
                    )
                ticket = object()
                self._queue.append(ticket)
                self.waiting += 1
                self._publish()
                position = 0
                try:
                    # First come, first served: only the head of the queue takes a freed slot.
                    while self.running >= self.max_running or self._queue[0] is not ticket:
                        now = self._queue.index(ticket) + 1
                        if on_queued is not None and now != position:
                            on_queued(now)
                        position = now
                        self._cond.wait(timeout=0.1)
                        if not still_wanted():
                            raise Cancelled("request abandoned while queued (cancelled or deadline expired)")
                finally:
                    self._queue.remove(ticket)
                    self.waiting -= 1
                    self._publish()  # also when abandoned: the queued gauge must not keep counting it
                    self._cond.notify_all()
                if on_queued is not None:
                    on_queued(0)
            self.running += 1
            self._publish()
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._publish()
                self._cond.notify_all()

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.heavy_running.set(self.running)
            self.metrics.heavy_queued.set(self.waiting)


class DecodeBudget:
    """Bytes that decoding and preprocessing of request images may hold at once, across all calls.

    A call reserves its image's cost (estimated from the header before decoding) for the time it
    decodes. One that does not fit waits until enough is released, while it is wanted and until
    shortly before its deadline (``wait_until()``, monotonic seconds), then gets Overloaded
    (RESOURCE_EXHAUSTED) naming the budget; a cost above the whole budget is refused at once.
    Any call that fits goes ahead (a small image need not wait behind a huge one). ``used`` and
    ``peak`` are the accounting, for tests and operators.
    """

    def __init__(self, total_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total_bytes
        self.clock = clock
        self._cond = threading.Condition()
        self.used = 0
        self.peak = 0
        self.holders = 0
        self.waiting = 0
        self.refused = 0

    def _describe(self) -> str:
        return f"this server's decode budget decode_budget_bytes={self.total:,} ({self.total / 1e6:,.0f} MB)"

    @contextmanager
    def reserve(self, nbytes: int, what: str, still_wanted: Callable[[], bool], wait_until: float) -> Iterator[None]:
        if nbytes > self.total:
            with self._cond:
                self.refused += 1
            raise Overloaded(
                f"{what}: decoding and preprocessing it needs about {nbytes / 1e6:,.0f} MB, more than "
                f"{self._describe()}; send a smaller image (fewer pixels or a lower bit depth)"
            )
        with self._cond:
            if self.used + nbytes > self.total:
                self.waiting += 1
                try:
                    while self.used + nbytes > self.total:
                        if not still_wanted():
                            raise Cancelled("request abandoned while waiting for decode memory")
                        left = wait_until - self.clock()
                        if left <= 0:
                            self.refused += 1
                            raise Overloaded(
                                f"{what}: decoding needs about {nbytes / 1e6:,.0f} MB and {self._describe()} "
                                f"stayed busy ({self.used / 1e6:,.0f} MB held by {self.holders} image(s)) until "
                                "shortly before the request's deadline; retry later or with a longer deadline"
                            )
                        self._cond.wait(timeout=min(left, 0.05))
                finally:
                    self.waiting -= 1
            self.used += nbytes
            self.holders += 1
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self.holders -= 1
                self._cond.notify_all()
