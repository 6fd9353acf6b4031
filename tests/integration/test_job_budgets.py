"""Every dataset-level job is budgeted before it starts, at the edge of both budgets.

For each RPC: with a budget of 1 the request is refused with RESOURCE_EXHAUSTED naming the budget
and the job's estimate; with the budget set to exactly that estimate the same request runs; one
below it is refused again. Refusals happen before any work (the server's running count stays 0).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from client import InterpClient, errors
from server.app import create_server
from tests.conftest import require_fashion_mnist
from tests.support.servers import test_config

DATASET = "fashion-mnist-test"
HANG_S = 120.0  # a bound only a hang reaches
IMAGE = np.full((28, 28), 128, np.uint8)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Any, InterpClient]]:
    require_fashion_mnist()
    config = test_config(models=("lenet",), index_dir=tmp_path_factory.mktemp("index"))
    srv, port = create_server(config)
    srv.start()
    with InterpClient(f"127.0.0.1:{port}", timeout=300) as client:
        client.build_index("lenet", DATASET, layers=["relu2", "fc3"], k=4)
        client.embedding("lenet", dataset=DATASET, layer="fc3", method="pca", limit=300)
        yield srv, client
    srv.stop(grace=None)


def _budget(srv: Any, **limits: int) -> None:
    services = srv.servicer.services
    services.config = dataclasses.replace(services.config, limits=dataclasses.replace(services.limits, **limits))


CALLS: dict[str, Callable[[InterpClient], Any]] = {
    "BuildIndex": lambda c: c.build_index("lenet", DATASET, layers=["relu1"], k=2),
    "TopActivations": lambda c: c.top_activations(
        "lenet", dataset=DATASET, layer="relu2", channels=[0, 1], k=4, projections=True
    ),
    "NearestNeighbors": lambda c: c.nearest_neighbors(IMAGE, model="lenet", dataset=DATASET, layer="fc3", k=3),
    "Embedding": lambda c: c.embedding("lenet", dataset=DATASET, layer="fc3", method="pca", limit=200),
    "PlaceImages": lambda c: c.place_images(
        [IMAGE], model="lenet", dataset=DATASET, layer="fc3", method="pca", limit=300
    ),
    "AttackDataset": lambda c: c.attack_dataset("lenet", dataset=DATASET, method="fgsm", epsilons=[0.05], limit=8),
}
BUDGETS = {"max_job_macs": r"about ([\d,]+) multiply-adds", "max_job_bytes": r"about ([\d,]+) bytes"}


@pytest.mark.parametrize("budget", sorted(BUDGETS))
@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_a_job_runs_at_its_budget_and_is_refused_just_below(served, rpc: str, budget: str) -> None:
    srv, client = served
    call = CALLS[rpc]
    try:
        _budget(srv, **{budget: 1})
        with pytest.raises(errors.ResourceExhausted, match=rf"RESOURCE_EXHAUSTED: {rpc}: .*{budget}=1 ") as info:
            call(client)
        assert srv.servicer.services.gate.running == 0
        estimate = int(re.search(BUDGETS[budget], str(info.value)).group(1).replace(",", ""))
        assert estimate > 1
        _budget(srv, **{budget: estimate - 1})
        with pytest.raises(errors.ResourceExhausted, match=budget):
            call(client)
        _budget(srv, **{budget: estimate})
        call(client)
    finally:
        _budget(srv, max_job_macs=50_000 * 10**9, max_job_bytes=10**10)


def test_a_cancelled_pca_stops_at_its_next_block(served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PCA of a wide layer asks whether to stop between blocks: cancelled while it computes, it
    stops at the next block and the server's running count drops. Driven by events, not by time."""
    from interp import pca

    srv, client = served
    started, proceed = threading.Event(), threading.Event()
    blocks: list[int] = []
    gram = pca._gram

    def paused_gram(a: np.ndarray, should_stop: Callable[[], bool] | None) -> np.ndarray:
        started.set()
        proceed.wait(HANG_S)
        # The client's cancel reaches the server over the network: go on once the server has seen it.
        deadline = time.monotonic() + HANG_S
        while should_stop is not None and not should_stop() and time.monotonic() < deadline:
            time.sleep(0.01)

        def counted() -> bool:
            blocks.append(1)
            return bool(should_stop is not None and should_stop())

        return gram(a, counted)

    monkeypatch.setattr(pca, "_gram", paused_gram)
    monkeypatch.setattr(pca, "BLOCK_FLOPS", 10**5)  # 400 x 10,000 features: one row of C^T C per block
    stream = client.iter_embedding("lenet", dataset=DATASET, layer="flatten", method="pca")
    outcome: list[BaseException] = []

    def consume() -> None:
        try:
            for _ in stream:
                pass
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    assert started.wait(HANG_S), "the PCA never started"
    assert srv.servicer.services.gate.running == 1
    stream.cancel()
    proceed.set()
    deadline = time.monotonic() + HANG_S
    while srv.servicer.services.gate.running:
        assert time.monotonic() < deadline, "the cancelled PCA kept its slot: a hang"
        time.sleep(0.01)
    reader.join(HANG_S)
    assert len(blocks) == 1  # the first block's question found the call cancelled; nothing after it ran
    assert outcome and isinstance(outcome[0], errors.Cancelled)
