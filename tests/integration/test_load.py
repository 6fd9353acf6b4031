"""Load: 16 concurrent SDK clients x 25 requests (Classify and SmoothGrad Saliency) on lenet.

The server has 2 heavy slots and 4 queue places, so 8 clients asking for SmoothGrad at once must
overflow: the overflow is answered RESOURCE_EXHAUSTED at once (no pile-up, no other error),
Classify (not heavy) never fails, the capacity limits hold at every moment, and resident memory is
flat after warm-up. Run with ``-s`` to see the figures (also recorded as junit properties).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from client import InterpClient, errors
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

CLIENTS = 16
ROUNDS = 5
PER_ROUND = 5  # requests per client per round: 25 per client, 400 in all
MAX_RUNNING, MAX_QUEUED = 2, 4
SMOOTHGRAD_SAMPLES = 64
RSS_GROWTH_LIMIT_MB = 50.0


def rss_mb() -> float:
    """Resident set size of this process (client threads and server together), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[object, str]]:
    limits = Limits(max_concurrent_heavy=MAX_RUNNING, max_queued_heavy=MAX_QUEUED, default_deadline_s=120.0)
    srv, port = create_server(test_config(models=("lenet",), worker_threads=8, limits=limits))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


def images() -> list[bytes]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    out = []
    for i in range(8):
        blob = 255 * np.exp(-((yy - 14 - i % 3) ** 2 + (xx - 10 - i) ** 2) / (30.0 + 5 * i))
        noisy = np.clip(blob + rng.normal(0, 8, blob.shape), 0, 255).astype(np.uint8)
        out.append(cv2.imencode(".png", noisy)[1].tobytes())
    return out


def test_16_clients_overload_is_refused_cleanly_and_memory_is_flat(served, record_property) -> None:
    srv, target = served
    gate = srv.servicer.gate
    pngs = images()
    clients = [InterpClient(target, timeout=60) for _ in range(CLIENTS)]
    outcomes: Counter[tuple[str, str]] = Counter()
    latencies: dict[str, list[float]] = {"classify": [], "saliency": []}
    unexpected: list[str] = []
    lock = threading.Lock()
    peak = {"running": 0, "waiting": 0}
    sampling = threading.Event()

    def watch_gate() -> None:  # the capacity limits hold at every moment
        while not sampling.is_set():
            peak["running"] = max(peak["running"], gate.running)
            peak["waiting"] = max(peak["waiting"], gate.waiting)
            time.sleep(0.002)

    def work(index: int, client: InterpClient, start: threading.Barrier) -> None:
        start.wait()
        for j in range(PER_ROUND):
            kind = "saliency" if (index + j) % 2 else "classify"
            image = pngs[(index + j) % len(pngs)]
            began = time.perf_counter()
            try:
                if kind == "classify":
                    result = client.classify(image, model="lenet", top_k=3)
                    ok = len(result.predictions) == 3
                else:
                    result = client.saliency(image, model="lenet", method="smoothgrad", samples=SMOOTHGRAD_SAMPLES)
                    ok = result.map.shape == (28, 28) and np.isfinite(result.map).all()
                code = "OK" if ok else "WRONG_RESULT"
            except errors.InterpError as error:
                code = error.code_name
            elapsed = time.perf_counter() - began
            with lock:
                outcomes[(kind, code)] += 1
                if code == "OK":
                    latencies[kind].append(elapsed)
                elif not (kind == "saliency" and code == "RESOURCE_EXHAUSTED"):
                    unexpected.append(f"{kind}: {code}")

    def one_round() -> float:
        start = threading.Barrier(CLIENTS)
        threads = [threading.Thread(target=work, args=(i, c, start)) for i, c in enumerate(clients)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a client hung"
        return time.perf_counter() - began

    monitor = threading.Thread(target=watch_gate, daemon=True)
    monitor.start()
    rss = [rss_mb()]
    durations = []
    try:
        for _ in range(ROUNDS):
            durations.append(one_round())
            rss.append(rss_mb())
    finally:
        sampling.set()
        for c in clients:
            c.close()

    total = sum(outcomes.values())
    all_ok = latencies["classify"] + latencies["saliency"]
    figures = {
        "requests": total,
        "seconds": round(sum(durations), 2),
        "rps": round(total / sum(durations), 1),
        "classify_ok": outcomes[("classify", "OK")],
        "saliency_ok": outcomes[("saliency", "OK")],
        "saliency_resource_exhausted": outcomes[("saliency", "RESOURCE_EXHAUSTED")],
        "classify_p50_ms": round(1000 * statistics.median(latencies["classify"]), 1),
        "classify_p95_ms": round(1000 * np.percentile(latencies["classify"], 95), 1),
        "saliency_p50_ms": round(1000 * statistics.median(latencies["saliency"]), 1),
        "saliency_p95_ms": round(1000 * np.percentile(latencies["saliency"], 95), 1),
        "ok_p50_ms": round(1000 * statistics.median(all_ok), 1),
        "ok_p95_ms": round(1000 * np.percentile(all_ok, 95), 1),
        "rss_mb_start": round(rss[0], 1),
        "rss_mb_after_warmup": round(rss[2], 1),
        "rss_mb_end": round(rss[-1], 1),
        "peak_running": peak["running"],
        "peak_queued": peak["waiting"],
    }
    for name, figure in figures.items():
        record_property(name, figure)
    print("\nload:", ", ".join(f"{k}={v}" for k, v in figures.items()))
    print("RSS per round (MB):", [round(r, 1) for r in rss])

    assert total == CLIENTS * ROUNDS * PER_ROUND
    assert not unexpected, Counter(unexpected)
    assert outcomes[("classify", "OK")] == total // 2  # Classify is not heavy: it never fails
    assert outcomes[("saliency", "RESOURCE_EXHAUSTED")] > 0  # overload actually happened ...
    assert outcomes[("saliency", "OK")] > 0  # ... and admitted work still completed
    assert peak["running"] <= MAX_RUNNING and peak["waiting"] <= MAX_QUEUED
    assert peak["running"] == MAX_RUNNING  # the slots were used
    assert rss[-1] - rss[2] < RSS_GROWTH_LIMIT_MB, f"RSS grew after warm-up: {rss}"
    assert gate.running == 0 and gate.waiting == 0
