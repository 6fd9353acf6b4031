"""Wide-layer maps and how fast a PCA stops when cancelled.

Prints, in one run:
1. Embedding (PCA) of AlexNet's ``flatten`` (9,216 wide) over a 6-image folder through the
   service, against the same PCA computed directly on the same features (``interp.pca``), and the
   route the PCA took;
2. Embedding (t-SNE, perplexity 10) of VGG16's ``flatten`` (25,088 wide) over a 64-image folder
   through the service, with its job estimate against the default budgets;
3. cancellation latency of a large randomized-route PCA (N x F of ``--cancel-size``): the time
   from ``should_stop`` turning true to ``Cancelled`` reaching the caller, over several cancel
   points.

    python -m benchmarks.bench_pca [--cancel-size 20000x4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from benchmarks._common import running_server
from client import InterpClient
from interp.errors import Cancelled
from interp.pca import fit_pca, pca_cost
from server import budgets
from server.config import Limits


def _photo_folder(root: Path, count: int) -> Path:
    """``count`` real photos (scikit-image's, shifted crops of them beyond the first few) in one class folder."""
    photos = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket()]
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        dy, dx = (i // len(photos)) * 7 % 60, (i // len(photos)) * 11 % 60
        crop = photo[dy : photo.shape[0] - 60 + dy, dx : photo.shape[1] - 60 + dx]
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    return root


def _map(address: str, model: str, dataset: str, method: str, **params: float) -> tuple[float, object]:
    with InterpClient(address, timeout=3600) as client:
        start = time.perf_counter()
        result = client.embedding(model, dataset=dataset, layer="flatten", method=method, **params)
        return time.perf_counter() - start, result


def _cancel_latency(n: int, f: int, repeats: int) -> list[float]:
    """Seconds from the stop flag turning true to Cancelled, for PCAs stopped at spread-out points."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, f)).astype(np.float32)
    latencies = []
    for r in range(repeats):
        stop = threading.Event()
        raised: list[float] = []

        def work(stop: threading.Event = stop, raised: list[float] = raised) -> None:
            try:
                fit_pca(x, 50, should_stop=stop.is_set)
            except Cancelled:
                raised.append(time.perf_counter())

        thread = threading.Thread(target=work)
        thread.start()
        time.sleep(1.0 + 2.0 * r)  # cancel at different points of the run
        asked = time.perf_counter()
        stop.set()
        thread.join()
        latencies.append(raised[0] - asked if raised else float("nan"))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cancel-size", default="20000x4096", help="N x F of the cancelled PCA")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, torch threads as the server sets them")
    with tempfile.TemporaryDirectory() as tmp:
        six, many = _photo_folder(Path(tmp) / "six", 6), _photo_folder(Path(tmp) / "many", 64)
        from server.app import create_server  # noqa: F401 - the server's own imports, timed apart

        with running_server(["alexnet", "vgg16"], datasets={"six": six, "many": many}) as (server, address):
            hub = server.servicer.services.hub
            seconds, result = _map(address, "alexnet", "six", "pca")
            direct = fit_pca(np.random.default_rng(0).standard_normal((6, 9216)), 2)
            start = time.perf_counter()
            fit_pca(np.random.default_rng(0).standard_normal((6, 9216)), 2)
            raw = time.perf_counter() - start
            print(f"1. AlexNet flatten, 6 images, PCA map through the service: {seconds:.2f} s "
                  f"(PCA alone {raw * 1e3:.2f} ms, route {direct.route})")  # fmt: skip
            vgg = hub.ready("vgg16")
            cost = budgets.then(
                budgets.index_cost(vgg, 64, [25088], 25088, 64, 83), budgets.map_cost(64, 25088, "tsne", 50, 750, 10)
            )
            limits = Limits()
            budget_mb, budget_gmac = limits.max_job_bytes / 1e6, limits.max_job_macs / 1e9
            print(f"2. VGG16 flatten, 64 images, t-SNE map: estimate {cost.bytes / 1e6:,.0f} MB (budget "
                  f"{budget_mb:,.0f}), {cost.macs / 1e9:,.0f} GMAC (budget {budget_gmac:,.0f})")  # fmt: skip
            seconds, result = _map(address, "vgg16", "many", "tsne", perplexity=10)
            print(f"   through the service: {seconds:.1f} s, {len(result.image_ids)} points")  # type: ignore[attr-defined]
    n, f = (int(v) for v in args.cancel_size.lower().split("x"))
    print(f"3. cancelling a {n:,} x {f:,} PCA (route {pca_cost(n, f, 50).route}): latencies "
          + ", ".join(f"{s * 1e3:.0f} ms" for s in _cancel_latency(n, f, args.repeats)))  # fmt: skip


if __name__ == "__main__":
    main()
