"""Progress events and cancellation for the iterative methods (feature vis, DeepDream, DFI).

Every loop reports one :class:`StepEvent` per step through an optional ``on_step`` callback and
asks an optional ``should_stop`` callback once per step; when it answers true the loop raises
:class:`interp.errors.Cancelled`. The loops are pure: what a callback does with the events
(stream them, draw a progress bar) is the caller's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.errors import Cancelled

PREVIEW_MAX_SIDE = 64
"""Previews are downsampled (area averaging) so that their longer side is at most this many pixels."""

PREVIEWS_PER_RUN = 16
"""``preview_every`` defaults to ``max(1, total_steps // PREVIEWS_PER_RUN)``."""


@dataclass(frozen=True)
class StepEvent:
    """One optimization step of an iterative method.

    Attributes:
        step: 1-based step number, counted over the whole run (all octaves / all alphas).
        total_steps: Planned number of steps of the whole run.
        objective: The value being optimized at this step (method-specific; see each method).
        elapsed_s: Wall-clock seconds since the run started.
        stage: Human-readable phase, e.g. ``"octave 2/3"`` or ``"alpha 0.5"``; ``""`` if none.
        preview: ``(N, C, h, w)`` float32 CPU tensor in [0, 1], longer side at most
            :data:`PREVIEW_MAX_SIDE`, on every ``preview_every``-th step; ``None`` otherwise.
    """

    step: int
    total_steps: int
    objective: float
    elapsed_s: float
    stage: str
    preview: Tensor | None = None


OnStep = Callable[[StepEvent], None]
ShouldStop = Callable[[], bool]


def default_preview_every(total_steps: int) -> int:
    """About :data:`PREVIEWS_PER_RUN` previews per run."""
    return max(1, total_steps // PREVIEWS_PER_RUN)


def make_preview(images: Tensor, max_side: int = PREVIEW_MAX_SIDE) -> Tensor:
    """A detached low-resolution copy of ``(N, C, H, W)`` images: float32 on the CPU, clamped to [0, 1]."""
    with torch.no_grad():
        out = images.detach().clamp(0.0, 1.0)
        h, w = out.shape[-2:]
        if max(h, w) > max_side:
            scale = max_side / max(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            out = F.interpolate(out, size=size, mode="area")
        return out.to(device="cpu", dtype=torch.float32, copy=True)


class StepReporter:
    """Counts the steps of one run, checks for cancellation and emits :class:`StepEvent` s.

    Args:
        total_steps: Planned steps of the whole run.
        on_step: Callback receiving each event, or ``None``.
        should_stop: Asked once per step (by :meth:`check`); ``True`` raises ``Cancelled``.
        preview_every: Attach a preview every this many steps; 0 disables previews.
    """

    def __init__(
        self,
        total_steps: int,
        on_step: OnStep | None,
        should_stop: ShouldStop | None,
        preview_every: int,
    ) -> None:
        self.total_steps = total_steps
        self.step = 0
        self._on_step = on_step
        self._should_stop = should_stop
        self._preview_every = preview_every
        self._start = time.perf_counter()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the caller asked to stop."""
        if self._should_stop is not None and self._should_stop():
            raise Cancelled(f"cancelled after {self.step} of {self.total_steps} steps")

    def wants_preview(self, step: int) -> bool:
        """Whether step ``step`` (1-based) carries a preview."""
        return self._on_step is not None and self._preview_every > 0 and step % self._preview_every == 0

    def report(self, objective: float, stage: str, images: Callable[[], Tensor] | None = None) -> None:
        """Count one step and emit its event; ``images()`` is called only when a preview is due."""
        self.step += 1
        if self._on_step is None:
            return
        preview = make_preview(images()) if images is not None and self.wants_preview(self.step) else None
        self._on_step(
            StepEvent(
                step=self.step,
                total_steps=self.total_steps,
                objective=float(objective),
                elapsed_s=time.perf_counter() - self._start,
                stage=stage,
                preview=preview,
            )
        )

    def skip_to(self, step: int) -> None:
        """Advance the counter without events (a stage that converged early ends at its planned step)."""
        self.step = max(self.step, step)


P = ParamSpec("P")
R = TypeVar("R")


def release_on_cancel(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``fn``; if it raises ``Cancelled``, re-raise a fresh ``Cancelled`` without its traceback.

    The original exception's traceback references the loop's frames and with them every tensor
    the loop held (parameters, optimizer state, autograd graphs). Raising a new exception outside
    the ``except`` block drops that chain, so the memory is freed as soon as the loop unwinds,
    even if the caller keeps the exception around.
    """
    try:
        return fn(*args, **kwargs)
    except Cancelled as exc:
        message = str(exc)
    raise Cancelled(message)
