"""Embedding quality and speed (issue 11), as markdown: t-SNE maps of Fashion-MNIST test (10k).

1. Quality, one row each: the trained LeNet's ``relu4`` map made by the service (Embedding RPC
   through the SDK, default parameters: PCA 50, perplexity 30, 250 + 500 iterations, seed 0);
   raw pixels (784-d, the same projection code, ``interp.embedding.embed``, same parameters); a
   random-weights LeNet's ``relu4`` map made by the service. Columns: 10-NN classification
   accuracy in the 2-D map (5-fold CV), trustworthiness (scikit-learn, 10 neighbours, a seeded
   3k-point sample; high-dimensional space = the features the map was made from).
2. Speed: the service's Embedding call (the layer already indexed, so the call is PCA + t-SNE +
   pictures) against openTSNE called directly on the same vectors with the same parameters
   (PCA 50 then ``TSNE(...).fit``, same ``n_jobs``), one run each, the service first.
3. ``--full``: all of Fashion-MNIST (``fashion-mnist-all``: 60k training + 10k test images) through
   the service: time, progress events, peak RSS of this process (server in-process).

Usage: PYTHONPATH=. .venv/bin/python -m benchmarks.eval_embedding [--threads 2] [--full] [--only-full]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._metrics import neighbour_accuracy, trust
from client import InterpClient, ProgressEvent
from interp.embedding import EmbeddingParams, embed
from interp.pca import fit_pca
from server.app import create_server
from server.config import Limits, ServerConfig

DATASET = "fashion-mnist-test"
FULL = "fashion-mnist-all"


def serve(index_dir: Path, weights: Path | None = None) -> tuple[object, str]:
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        models=("lenet",),
        weights={"lenet": weights} if weights is not None else {},
        reflection=False,
        log_level="WARNING",
        index_dir=index_dir,
        limits=Limits(default_deadline_s=7200.0),
    )
    server, port = create_server(config)
    server.start()
    return server, f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also all 70k images through the service")
    parser.add_argument("--only-full", action="store_true", help="the 70k run alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the in-process server's openTSNE n_jobs
    import openTSNE

    from models.dataset_registry import DatasetRegistry
    from models.registry import get_spec
    from server.stores.index import IndexStore, base_key

    dataset = DatasetRegistry().get(DATASET)
    images, labels = dataset.arrays()
    labels = labels.astype(np.int64)
    params = EmbeddingParams()
    tmp = Path(tempfile.mkdtemp(prefix="eval-embedding-"))
    rows: list[tuple[str, float, float, float]] = []

    def service_map(weights: Path | None, name: str) -> tuple[np.ndarray, np.ndarray, float, float]:
        index_dir = tmp / f"index-{name}"
        server, address = serve(index_dir, weights)
        try:
            with InterpClient(address, timeout=7200) as c:
                c.build_index("lenet", DATASET, layers=["relu4"])
                start = time.perf_counter()
                result = c.embedding("lenet", dataset=DATASET, layer="relu4")
                wall = time.perf_counter() - start
        finally:
            server.stop(None)  # type: ignore[attr-defined]
        spec = get_spec("lenet").preprocessing
        stored = IndexStore(index_dir).find(base_key(result.weights_sha256, dataset.manifest(), spec), "relu4", 1)
        if stored is None:
            raise RuntimeError("the index the service used was not found")
        features = np.asarray(stored.features("relu4"), dtype=np.float32)[result.image_ids]
        return result.coordinates, features, wall, result.seconds

    if args.only_full:
        full_split(tmp, args.threads)
        return

    # -- trained relu4: the service, then openTSNE directly -------------------------------------
    coords, features, wall, projection = service_map(None, "trained")
    start = time.perf_counter()
    reduced = fit_pca(features, params.pca_dims).project(features)
    direct = np.asarray(
        openTSNE.TSNE(
            perplexity=params.perplexity,
            n_iter=params.iterations,
            early_exaggeration_iter=params.early_iterations,
            n_jobs=args.threads,
            random_state=params.seed,
        ).fit(reduced)
    )
    direct_s = time.perf_counter() - start
    rows.append(("trained LeNet relu4 (service)", neighbour_accuracy(coords, labels), trust(features, coords), wall))
    direct_acc = neighbour_accuracy(direct, labels)

    # -- pixels, same projection code ---------------------------------------------------------
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    start = time.perf_counter()
    pix = embed(pixels, "tsne", params, threads=args.threads).coordinates
    pix_s = time.perf_counter() - start
    rows.append(("raw pixels (PCA 50, same code)", neighbour_accuracy(pix, labels), trust(pixels, pix), pix_s))

    # -- random-weights LeNet through the service ----------------------------------------------
    from models.weights import random_weights

    state, _ = random_weights(get_spec("lenet"), seed=0)
    random_path = tmp / "lenet_random.pt"
    torch.save(state, random_path)
    rcoords, rfeatures, rwall, _ = service_map(random_path, "random")
    rows.append(("random-weights LeNet relu4 (service)", neighbour_accuracy(rcoords, labels),
                 trust(rfeatures, rcoords), rwall))  # fmt: skip

    load = open("/proc/loadavg").read().split()[:3]
    print(f"## Embedding quality, {DATASET} (10,000 points), {args.threads} threads, load average {' '.join(load)}\n")
    print("| map | 10-NN accuracy (5-fold) | trustworthiness (3k sample) | seconds |")
    print("| --- | ---: | ---: | ---: |")
    for name, acc, tw, seconds in rows:
        print(f"| {name} | {acc:.3f} | {tw:.3f} | {seconds:.1f} |")
    print(f"\ntrained minus pixels: {rows[0][1] - rows[1][1]:+.3f}")
    print("\n## Speed: service vs openTSNE directly (10k relu4 vectors, same parameters, one run each)\n")
    print(f"- openTSNE directly (PCA 50 + TSNE.fit, n_jobs={args.threads}): {direct_s:.1f} s "
          f"(its map's 10-NN accuracy {direct_acc:.3f})")  # fmt: skip
    print(f"- service Embedding call (indexed layer; PCA, t-SNE, pictures, transfer): {wall:.1f} s "
          f"(projection alone {projection:.1f} s)")  # fmt: skip
    print(f"- ratio call / direct: {wall / direct_s:.2f} (projection / direct: {projection / direct_s:.2f})")

    if args.full:
        full_split(tmp, args.threads)


def full_split(tmp: Path, threads: int) -> None:
    """All 70k Fashion-MNIST images through the service: time (index pass included), progress, peak RSS."""
    from models.dataset_registry import DatasetRegistry

    index_dir = tmp / "index-full"
    server, address = serve(index_dir)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    events: list[ProgressEvent] = []
    try:
        with InterpClient(address, timeout=7200) as c:
            start = time.perf_counter()
            full = c.embedding("lenet", dataset=FULL, layer="relu4", progress=events.append)
            seconds = time.perf_counter() - start
    finally:
        server.stop(None)  # type: ignore[attr-defined]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stages = sorted({e.stage for e in events if e.stage})
    full_labels = DatasetRegistry().get(FULL).labels().astype(np.int64)[full.image_ids]
    load = open("/proc/loadavg").read().split()[:3]
    print(f"\n## All of Fashion-MNIST ({len(full.image_ids):,} points) through the service, {threads} threads\n")
    print(f"- {seconds:.1f} s end to end (index pass included; projection {full.seconds:.1f} s), "
          f"{len(events)} progress events ({', '.join(stages)}); load average at the end {' '.join(load)}")  # fmt: skip
    print(f"- peak RSS of the process {peak:.0f} MB (before: {rss_before:.0f} MB)")
    print(f"- 10-NN accuracy (5-fold) {neighbour_accuracy(full.coordinates, full_labels):.3f}")

if __name__ == "__main__":
    main()
