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
