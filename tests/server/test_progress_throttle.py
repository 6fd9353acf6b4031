"""Progress coalescing: which steps of a streamed run become events, judged on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from server.streaming import ProgressThrottle


@dataclass(frozen=True)
class Step:
    step: int
    total_steps: int
    preview: torch.Tensor | None = None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sent_steps(
    throttle: ProgressThrottle, clock: FakeClock, total: int, dt: float, stop_at: int | None = None
) -> list[int]:
    """Steps sent for a run of ``total`` steps, ``dt`` fake seconds apart (ending at ``stop_at``)."""
    sent = []
    for n in range(1, (stop_at or total) + 1):
        clock.now += dt
        if throttle.admit(Step(n, total)):
            sent.append(n)
    last = throttle.flush()
    if last is not None:
        sent.append(last[0].step)
    return sent


def test_rate_zero_sends_every_step() -> None:
    clock = FakeClock()
    assert sent_steps(ProgressThrottle(0.0, clock), clock, 50, 0.0001) == list(range(1, 51))


def test_a_very_low_rate_sends_the_first_and_the_last_only() -> None:
    clock = FakeClock()
    assert sent_steps(ProgressThrottle(1e-6, clock), clock, 500, 0.001) == [1, 500]


def test_the_rate_caps_events_per_second_of_the_clock() -> None:
    clock = FakeClock()
    # 1000 steps of 1 ms = 1 s of fake time at 20/s: the first, one every 50 ms, the last.
    sent = sent_steps(ProgressThrottle(20.0, clock), clock, 1000, 0.001)
    assert sent[0] == 1 and sent[-1] == 1000
    assert 20 <= len(sent) <= 22
    assert all(b - a >= 49 for a, b in zip(sent[:-2], sent[1:-1], strict=True))  # 50 ms apart (rounding: 49)
    # Slow steps (100 ms each) are all sent: the cap never delays or drops a slow run's steps.
    slow = FakeClock()
    assert sent_steps(ProgressThrottle(20.0, slow), slow, 30, 0.1) == list(range(1, 31))


def test_a_run_that_ends_early_still_reports_its_last_step() -> None:
    clock = FakeClock()
    sent = sent_steps(ProgressThrottle(1e-6, clock), clock, 500, 0.001, stop_at=137)
    assert sent == [1, 137]


def test_previews_ride_on_the_next_event_sent() -> None:
    clock = FakeClock()
    throttle = ProgressThrottle(1e-6, clock)
    previews = {n: torch.full((1, 1, 4, 4), float(n)) for n in (25, 50, 75)}
    sent = [due for n in range(1, 81) if (due := throttle.admit(Step(n, 100, previews.get(n)))) is not None]
    assert [(step.step, shows) for step, shows, _ in sent] == [(1, 0)]  # previews held back with their steps
    step, shows, preview = throttle.flush()  # the run ended at step 80: its last step, and the latest preview
    assert (step.step, shows) == (80, 75) and float(preview.max()) == 75.0
    assert throttle.flush() is None


def test_a_preview_step_that_is_due_carries_its_own_preview() -> None:
    clock = FakeClock()
    throttle = ProgressThrottle(0.0, clock)
    preview = torch.zeros(1, 1, 4, 4)
    step, shows, carried = throttle.admit(Step(4, 8, preview))
    assert (step.step, shows) == (4, 4) and carried is preview
    step, shows, carried = throttle.admit(Step(5, 8))
    assert (step.step, shows, carried) == (5, 0, None)
