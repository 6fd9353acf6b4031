"""What streamed RPCs share beyond the servicer: the watch on clients that stopped reading, and
the throttle that picks which steps become Progress events."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc
import torch

log = logging.getLogger("interp.server")


class Call(Protocol):
    """What the watch needs of a call (:class:`server.context.Call`)."""

    context: grpc.ServicerContext
    request_id: str


class StallWatch:
    """Cancels streamed calls whose client stopped reading for longer than ``limit_s``.

    A client that reads one event and then neither reads nor cancels would otherwise hold its
    gRPC worker (and, until the work ends, its capacity slot) until the call's deadline. The
    watch thread runs only while some stream is waiting on its client.
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: dict[int, tuple[float, Call]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.cancelled = 0  # streams cancelled for not reading, for tests and operators

    def waiting(self, key: int, call: Call) -> None:
        with self._lock:
            self._since[key] = (time.monotonic(), call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="interp-stall-watch", daemon=True)
                self._thread.start()

    def resumed(self, key: int) -> None:
        with self._lock:
            self._since.pop(key, None)

    def _watch(self) -> None:
        tick = threading.Event()
        while True:
            tick.wait(min(1.0, self.limit_s / 4))
            now = time.monotonic()
            with self._lock:
                stalled = [(key, call) for key, (since, call) in self._since.items() if now - since > self.limit_s]
                for key, _ in stalled:
                    del self._since[key]
                if not self._since and not stalled:
                    self._thread = None
                    return
            for _, call in stalled:
                log.warning(
                    "request %s: the client has not read for %.0f s (stream_stall_s): cancelling the stream",
                    call.request_id,
                    self.limit_s,
                )
                self.cancelled += 1
                call.context.cancel()


class ProgressThrottle:
    """Which steps of a streamed run become Progress events: at most ``rate`` a second.

    Always sent: the first step and the last (``step == total_steps``). A step held back is kept
    as ``pending`` until a later one replaces it, so the run's end can still send its last step
    when the loop stopped early; a preview held back rides on the next event sent (with the step
    it shows), so previews arrive at the lower of their own rate and this one. ``rate`` 0 sends
    every step. Judged on ``clock`` (monotonic seconds; tests pass a fake).
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.pending: Any = None
        self._preview: tuple[int, torch.Tensor] | None = None
        self._last: float | None = None

    def admit(self, step: Any) -> tuple[Any, int, torch.Tensor | None] | None:
        """``(step, preview step, preview)`` when ``step`` (a StepEvent) is to be sent now, else None."""
        if step.preview is not None:
            self._preview = (step.step, step.preview)
        now = self.clock() if self.interval else 0.0
        if (
            self._last is None
            or not self.interval
            or now - self._last >= self.interval
            or step.step >= step.total_steps
        ):
            self._last = now
            self.pending = None
            return self._take(step)
        self.pending = step
        return None

    def flush(self) -> tuple[Any, int, torch.Tensor | None] | None:
        """The step held back last, with the latest preview (None if the last step was sent)."""
        step, self.pending = self.pending, None
        return None if step is None else self._take(step)

    def _take(self, step: Any) -> tuple[Any, int, torch.Tensor | None]:
        preview, self._preview = self._preview, None
        return (step, 0, None) if preview is None else (step, preview[0], preview[1])


class LatestWins:
    """What a live stream has to answer, in arrival order, with at most one frame waiting.

    ``put(item, frame=True)`` adds a frame: a frame still waiting is replaced (never computed)
    and counted in ``skipped``. ``frame=False`` adds a notice (an answer without a computation,
    such as a refused settings change); at most ``max_notices`` wait, the oldest dropped. ``take``
    waits for the next item and returns it with the frames skipped since the previous take;
    ``close`` ends the stream once what waits is taken. Nothing grows without bound.
    """

    def __init__(self, max_notices: int = 8) -> None:
        self._cond = threading.Condition()
        self._items: list[tuple[Any, bool]] = []
        self._max_notices = max_notices
        self._closed = False
        self.skipped = 0  # since the last take
        self.skipped_total = 0
        self.last_put = time.monotonic()

    def put(self, item: Any, frame: bool = True) -> None:
        with self._cond:
            self.last_put = time.monotonic()
            if frame:
                for i, (_, waiting_frame) in enumerate(self._items):
                    if waiting_frame:
                        del self._items[i]
                        self.skipped += 1
                        self.skipped_total += 1
                        break
            elif sum(1 for _, f in self._items if not f) >= self._max_notices:
                first = next(i for i, (_, f) in enumerate(self._items) if not f)
                del self._items[first]
            self._items.append((item, frame))
            self._cond.notify_all()

    def touch(self) -> None:
        """A message arrived that asks for no answer: the stream is not idle."""
        with self._cond:
            self.last_put = time.monotonic()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float) -> tuple[Any, int] | None:
        """The next item and the frames skipped before it; None after ``timeout`` s without one
        or once closed and empty (``closed`` tells which)."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item, _ = self._items.pop(0)
            skipped, self.skipped = self.skipped, 0
            return item, skipped

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed and not self._items
