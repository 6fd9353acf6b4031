"""Dataset index: build throughput against a raw batched forward, peak RSS, TopActivations latency.

    PYTHONPATH=. python -m benchmarks.bench_dataset_index [--dataset fashion-mnist-train] [--repeats 3]

1. The pass (local engine, every conv/ReLU/pool/linear layer of LeNet, k = 64) against a raw
   ``torch.inference_mode()`` forward over the same batches (same batch size, same threads),
   interleaved; the target is a ratio of images/s >= 0.8.
2. One full build through the index store (pass + writing the files): seconds, images/s and the
   growth of peak RSS over the build.
3. TopActivations for 16 channels x k = 9 of ``relu2`` through an in-process server reading that
   index: p50 / p90 latency (target p50 <= 50 ms).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from interp.dataset_index import build_index, default_layers
from models.dataset_registry import DatasetRegistry
from models.hub import ModelHub
from models.weights import WeightsOptions
from server.dataset_index import IndexStore, iter_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist-train")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    hub = ModelHub(["lenet"], WeightsOptions(random=True))
    model = hub.get("lenet")
    module = model.require_ready()
    dataset = DatasetRegistry().get(args.dataset)
    spec = model.spec.preprocessing
    layers = default_layers(module)
    size = dataset.size

    def raw() -> None:
        with torch.inference_mode():
            for _, x in iter_batches(dataset, spec, args.batch_size):
                module(x)

    def indexed() -> None:
        build_index(module, iter_batches(dataset, spec, args.batch_size), layers, 64, size)

    raw()  # warm-up: the dataset is read once and kept
    times: dict[str, list[float]] = {"raw": [], "index": []}
    for _ in range(args.repeats):
        for name, fn in (("raw", raw), ("index", indexed)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    raw_s, index_s = statistics.median(times["raw"]), statistics.median(times["index"])
    print(f"{args.dataset}: {size:,} images, batch {args.batch_size}, {args.threads} thread(s), layers {len(layers)}")
    print(f"raw forward  {size / raw_s:10,.0f} images/s  (median of {args.repeats}: {raw_s:.2f} s)")
    print(f"index pass   {size / index_s:10,.0f} images/s  (median of {args.repeats}: {index_s:.2f} s)")
    print(f"ratio index / raw images/s: {raw_s / index_s:.2f}  (target >= 0.8)")

    with tempfile.TemporaryDirectory() as root:
        store = IndexStore(Path(root))
        _, _, figures = store.build(
            module, model_name="lenet", weights_sha256=model.weights.sha256, spec=spec, dataset=dataset,
            layers=layers, k=64, batch_size=args.batch_size,
        )  # fmt: skip
        print(
            f"full build (pass + files): {figures['seconds']:.2f} s, {figures['images_per_s']:,.0f} images/s, "
            f"peak RSS growth {figures['peak_rss_growth_mb']:.0f} MB"
        )
        latency(Path(root), args.dataset, args.queries)


def latency(index_dir: Path, dataset: str, queries: int) -> None:
    from client import InterpClient
    from server.app import create_server
    from server.config import Limits, ServerConfig

    config = ServerConfig(
        host="127.0.0.1", port=0, models=("lenet",), random_weights=True, reflection=False, log_level="WARNING",
        index_dir=index_dir, limits=Limits(default_deadline_s=600.0),
    )  # fmt: skip
    server, port = create_server(config)
    server.start()
    try:
        with InterpClient(f"127.0.0.1:{port}") as c:
            c.top_activations("lenet", dataset=dataset, layer="relu2", channels=list(range(16)), k=9)  # loads the index
            samples = []
            for _ in range(queries):
                start = time.perf_counter()
                c.top_activations("lenet", dataset=dataset, layer="relu2", channels=list(range(16)), k=9)
                samples.append((time.perf_counter() - start) * 1000)
        samples.sort()
        p50, p90 = samples[len(samples) // 2], samples[int(len(samples) * 0.9)]
        print(f"TopActivations relu2 16 channels x k=9: p50 {p50:.1f} ms, p90 {p90:.1f} ms  (target p50 <= 50 ms)")
    finally:
        server.stop(None)


if __name__ == "__main__":
    main()
