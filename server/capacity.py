"""Bounded admission for heavy RPCs: at most N computing, at most Q waiting, the rest refused.

A full queue answers RESOURCE_EXHAUSTED at once instead of letting requests pile up until their
deadlines expire; waiting requests give up when their own deadline or cancellation comes first.
"""

from __future__ import annotations

import threading
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
