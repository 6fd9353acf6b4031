"""Bounded admission for heavy RPCs: at most N computing, at most Q waiting, the rest refused.

A full queue answers RESOURCE_EXHAUSTED at once instead of letting requests pile up until their
deadlines expire; waiting requests give up when their own deadline or cancellation comes first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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

    @contextmanager
    def slot(self, still_wanted: Callable[[], bool] = lambda: True) -> Iterator[None]:
        """Hold one computing slot for the block; raise Overloaded when the queue is full."""
        with self._cond:
            if self.running >= self.max_running:
                if self.waiting >= self.max_waiting:
                    raise Overloaded(
                        f"server busy: {self.running} heavy requests running and {self.waiting} queued "
                        f"(limits {self.max_running} and {self.max_waiting}); retry later"
                    )
                self.waiting += 1
                self._publish()
                try:
                    while self.running >= self.max_running:
                        self._cond.wait(timeout=0.1)
                        if not still_wanted():
                            raise Overloaded("request abandoned while queued (cancelled or deadline expired)")
                finally:
                    self.waiting -= 1
                    self._publish()  # also when abandoned: the queued gauge must not keep counting it
            self.running += 1
            self._publish()
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._publish()
                self._cond.notify()

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.heavy_running.set(self.running)
            self.metrics.heavy_queued.set(self.waiting)
