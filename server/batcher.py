"""Micro-batching of concurrent single-image calls (Classify, gradient Saliency) to one model.

Concurrent calls of one *kind* (RPC and model) with the same *key* (the kind plus every parameter
that changes the computation) share one batched forward/backward pass instead of paying one each,
like TorchServe's ``batchSize`` / ``maxBatchDelay`` and Triton's dynamic batcher. Per key, one
batch computes at a time (one "model instance"); calls that arrive meanwhile queue, and when it
ends the queue (oldest first, at most ``max_size``) becomes the next batch, on the thread of the
first call in it. A batch also starts:

- at once when the queue holds ``max_size`` calls;
- at once when no batch of its key computes and no other call of its kind is on its way (between
  arriving at the server and reaching the batcher: decoding its image), so that a lone caller
  never waits for companions that cannot come;
- otherwise when its oldest call has waited ``delay_s`` for companions.

So a queued call waits at most ``delay_s`` plus one batch's computing (when at most ``max_size``
calls are queued), and never when it is alone. Results are the per-image slices of the batch's
result: the served models are in eval mode (BatchNorm uses its running statistics), so each
image's result does not depend on its companions (the tests check it to 1e-5).

Cancellation: a queued call that is cancelled (or past its deadline) leaves the queue at once; a
call whose batch computes on another call's thread also returns at once (its result is
discarded). The call computing the batch returns when the pass ends; the pass is told to stop
(``should_stop``) when no call of the batch still wants it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from interp.errors import Cancelled

Compute = Callable[[torch.Tensor, Sequence[Any], Callable[[], bool]], Sequence[Any]]
"""``compute(x, extras, should_stop)``: x (B, C, H, W), one extra per image -> one result per image."""

POLL_S = 0.05
"""Waiting calls look at their cancellation at least this often."""


@dataclass(eq=False)
class _Item:
    x: torch.Tensor
    extra: Any
    still_wanted: Callable[[], bool]
    enqueued: float
    state: str = "queued"  # queued -> running -> done; or abandoned
    result: Any = None
    error: BaseException | None = None


@dataclass
class _Queue:
    items: list[_Item] = field(default_factory=list)
    running: bool = False


@dataclass
class BatchStats:
    """Counters for operators and tests: batches run and the calls they held."""

    batches: int = 0
    calls: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)  # the last 1000 batch sizes, oldest first


class Batcher:
    """Per-key queues of single-image calls computed as batches.

    Args:
        max_size: the most calls in one batch; 1 disables batching.
        delay_s: the longest the oldest queued call waits for companions when no batch of its
            key computes but other calls of its kind are on their way; 0 disables batching.
        clock: monotonic seconds (tests pass a fake and call :meth:`wake` after moving it).
    """

    def __init__(
        self,
        max_size: int,
        delay_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_size = max_size
        self.delay_s = delay_s
        self.clock = clock
        self._cond = threading.Condition()
        self._queues: dict[Hashable, _Queue] = {}
        self._on_the_way: dict[Hashable, int] = {}
        self.stats = BatchStats()

    @property
    def enabled(self) -> bool:
        return self.max_size > 1 and self.delay_s > 0

    # -- calls on their way ------------------------------------------------------------------------

    @contextmanager
    def arriving(self, kind: Hashable) -> Iterator[Callable[[], None]]:
        """Count a call of ``kind`` as on its way to the batcher for the block.

        Yields ``arrived()``, which ends the count early (the call reached the batcher, or will
        not use it); leaving the block ends it in any case.
        """
        done = False

        def arrived() -> None:
            nonlocal done
            with self._cond:
                if not done:
                    done = True
                    self._on_the_way[kind] -= 1
                    if not self._on_the_way[kind]:
                        del self._on_the_way[kind]
                    self._cond.notify_all()

        with self._cond:
            self._on_the_way[kind] = self._on_the_way.get(kind, 0) + 1
        try:
            yield arrived
        finally:
            arrived()

    def wake(self) -> None:
        """Make waiting calls look at the clock again (tests that move a fake clock)."""
        with self._cond:
            self._cond.notify_all()

    def pending(self, key: Hashable | None = None) -> int:
        """Calls queued (not yet in a computing batch), for ``key`` or in all."""
        with self._cond:
            queues = self._queues.values() if key is None else [self._queues.get(key, _Queue())]
            return sum(len(q.items) for q in queues)

    def computing(self, key: Hashable) -> bool:
        with self._cond:
            queue = self._queues.get(key)
            return queue is not None and queue.running

    # -- the call -----------------------------------------------------------------------------------

    def run(
        self,
        kind: Hashable,
        key: Hashable,
        x: torch.Tensor,
        extra: Any,
        compute: Compute,
        *,
        still_wanted: Callable[[], bool],
        slot: Callable[[Callable[[], bool]], Any] | None = None,
    ) -> Any:
        """This call's result, computed in a batch with concurrent calls of the same ``key``.

        ``x`` is the call's (1, C, H, W) input and ``extra`` what else ``compute`` needs of it
        (e.g. its target class). ``key`` must start with ``kind``. ``slot(still_wanted)``, when
        given, is a context manager holding a capacity slot for the batch (heavy methods: the
        servicer's gate). Raises what ``compute`` or ``slot`` raised for the batch, or
        :class:`Cancelled` when the call stopped being wanted.
        """
        item = _Item(x, extra, still_wanted, self.clock())
        with self._cond:
            queue = self._queues.setdefault(key, _Queue())
            queue.items.append(item)
            self._cond.notify_all()
            while True:
                if item.state == "done":
                    break
                if not still_wanted():
                    if item.state == "queued":
                        queue.items.remove(item)
                        self._forget(key, queue)
                    item.state = "abandoned"
                    self._cond.notify_all()
                    raise Cancelled("request stopped while its batch waited or computed (cancelled or deadline)")
                if item.state == "queued" and not queue.running and queue.items[0] is item:
                    # Only the oldest call starts a batch (and computes it on its thread): first
                    # come, first served, and the starter is always in the batch it computes.
                    wait = self._wait_before_start(kind, queue)
                    if wait <= 0:
                        batch = queue.items[: self.max_size]
                        del queue.items[: len(batch)]
                        for member in batch:
                            member.state = "running"
                        queue.running = True
                        break
                    self._cond.wait(timeout=min(wait, POLL_S))
                    continue
                self._cond.wait(timeout=POLL_S)
        if item.state == "done":
            return self._outcome(item)
        self._compute(key, queue, batch, compute, slot)
        return self._outcome(item)

    def _wait_before_start(self, kind: Hashable, queue: _Queue) -> float:
        """Seconds the head of an idle queue still waits for companions (<= 0: start now)."""
        if len(queue.items) >= self.max_size or not self.enabled:
            return 0.0
        if not self._on_the_way.get(kind):
            return 0.0  # nobody else can join
        return self.delay_s - (self.clock() - queue.items[0].enqueued)

    def _compute(
        self,
        key: Hashable,
        queue: _Queue,
        batch: list[_Item],
        compute: Compute,
        slot: Callable[[Callable[[], bool]], Any] | None,
    ) -> None:
        def wanted() -> bool:
            return any(m.state == "running" and m.still_wanted() for m in batch)

        try:
            if slot is not None:
                with slot(wanted):
                    results = self._call(batch, compute, wanted)
            else:
                results = self._call(batch, compute, wanted)
            for member, result in zip(batch, results, strict=True):
                member.result = result
        except BaseException as exc:  # noqa: BLE001 - every member of the batch gets the error
            for member in batch:
                member.error = exc
        finally:
            with self._cond:
                for member in batch:
                    if member.state == "running":
                        member.state = "done"
                queue.running = False
                self.stats.batches += 1
                self.stats.calls += len(batch)
                self.stats.largest = max(self.stats.largest, len(batch))
                self.stats.sizes.append(len(batch))
                if len(self.stats.sizes) > 1000:
                    del self.stats.sizes[0]
                self._forget(key, queue)
                self._cond.notify_all()

    @staticmethod
    def _call(batch: list[_Item], compute: Compute, wanted: Callable[[], bool]) -> Sequence[Any]:
        x = batch[0].x if len(batch) == 1 else torch.cat([m.x for m in batch])
        results = compute(x, [m.extra for m in batch], lambda: not wanted())
        if len(results) != len(batch):
            raise RuntimeError(f"a batch of {len(batch)} calls got {len(results)} results")
        return results

    def _forget(self, key: Hashable, queue: _Queue) -> None:
        if not queue.items and not queue.running and self._queues.get(key) is queue:
            del self._queues[key]

    @staticmethod
    def _outcome(item: _Item) -> Any:
        if item.error is not None:
            raise item.error
        return item.result
