"""Dataset index: build throughput against a raw batched forward, peak RSS, TopActivations latency.

    PYTHONPATH=. python -m benchmarks.bench_dataset_index [--dataset fashion-mnist-train] [--repeats 3]
        [--batch-size N] [--skip-imagenet] [--threads N] [--keep-freed-mb MB]

The process runs as the server does: torch's default thread count (one per core) and the
server's malloc policy (``--keep-freed-mb``, server/memory.py) unless told otherwise.

1. The pass (local engine, every conv/ReLU/pool/linear layer of LeNet, k = 64) against a raw
   ``torch.inference_mode()`` forward over the same batches (same batch size, same threads),
   interleaved; the target is a ratio of images/s >= 0.8. The batch size is the server's
   default (2048 for LeNet) unless given. Also the minor page faults of each (a pass that maps
   its large blocks afresh each batch shows hundreds of thousands), on the main thread (as the
   ``interp-index`` command runs) and on a pool thread (as the server runs BuildIndex): once in
   this process, where the main thread's OpenMP team is alive (so libgomp does not spin), and
   once in a subprocess where that pool thread is the only one computing.
2. One full build through the index store (pass + writing the files), run before the above:
   seconds, images/s and the growth of peak RSS over the build (over what the raw forward
   reached).
3. TopActivations for 16 channels x k = 9 of ``relu2`` through an in-process server reading that
   index: p50 / p90 latency (target p50 <= 50 ms).
4. AlexNet and VGG16 (seeded random weights) over a folder of 64 photos (crops of scikit-image's
   sample photos, written to a temporary folder dataset): the pass against the raw forward over
   the same decoded batches (the server's default batch size), target >= 0.8 as well.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.dataset.index import build_index, default_layers
from models.dataset_registry import DatasetRegistry
from models.hub import ModelHub
from models.weights import WeightsOptions
from server.config import ServerConfig
from server.memory import keep_freed_memory
from server.stores.datasets import iter_batches
from server.stores.index import IndexStore, default_batch
from server.threads import pin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist-train")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the server's (2048 for LeNet)")
    parser.add_argument("--skip-imagenet", action="store_true", help="skip part 4 (AlexNet and VGG16)")
    parser.add_argument("--only-imagenet", action="store_true", help="only part 4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's, as the server)")
    parser.add_argument("--keep-freed-mb", type=int, default=ServerConfig.keep_freed_mb, help="as the server's flag")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--pool-thread-only", action="store_true", help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    policy = keep_freed_memory(args.keep_freed_mb)
    if args.only_imagenet:
        imagenet_part(args.repeats)
        return

    if args.pool_thread_only:
        # everything on one pool thread, setup included, so that no other thread owns an OpenMP team
        with ThreadPoolExecutor(1, initializer=pin(args.threads)) as pool:
            pool.submit(pool_thread_only, args).result()
        return
    model, module, dataset, spec, layers, raw, indexed = lenet(args)
    size = dataset.size
    raw()  # warm-up: the dataset is read once and kept
    print(f"{args.dataset}: {size:,} images, batch {args.batch_size}, {args.threads} torch thread(s), "
          f"layers {len(layers)}, malloc keeps {args.keep_freed_mb if policy else 'the default'} MB freed")  # fmt: skip
    with tempfile.TemporaryDirectory() as root:
        # first, so that its peak RSS growth is over a plain forward's, not over earlier passes'
        store = IndexStore(Path(root))
        _, _, figures = store.build(
            module, model_name="lenet", weights_sha256=model.weights.sha256, spec=spec, dataset=dataset,
            layers=layers, k=64, batch_size=args.batch_size,
        )  # fmt: skip
        print(
            f"full build (pass + files, first run): {figures['seconds']:.2f} s, "
            f"{figures['images_per_s']:,.0f} images/s, peak RSS growth over a raw forward's "
            f"{figures['peak_rss_growth_mb']:.0f} MB"
        )
        indexed()  # the pass's own first-call costs, as the raw forward's
        compare(raw, indexed, size, args.repeats, "main thread (the interp-index command)")
        with ThreadPoolExecutor(1, initializer=pin(args.threads)) as pool:  # as the server's pool threads
            compare(lambda: pool.submit(raw).result(), lambda: pool.submit(indexed).result(), size, args.repeats,
                    "a pool thread, the main thread's OpenMP team alive (a server doing other work too)")  # fmt: skip
        latency(Path(root), args.dataset, args.queries)
    alone = [sys.executable, "-m", "benchmarks.bench_dataset_index", "--pool-thread-only", "--dataset", args.dataset,
             "--batch-size", str(args.batch_size), "--repeats", str(args.repeats), "--threads", str(args.threads),
             "--keep-freed-mb", str(args.keep_freed_mb)]  # fmt: skip
    print(subprocess.run(alone, capture_output=True, text=True, check=True).stdout, end="")
    if not args.skip_imagenet:
        imagenet_part(args.repeats)


def lenet(args: argparse.Namespace) -> tuple[Any, torch.nn.Module, Any, Any, list[str], Callable, Callable]:
    """LeNet (seeded random weights), the dataset, its layers, and the raw and indexed passes."""
    model = ModelHub(["lenet"], WeightsOptions(random=True)).get("lenet")
    module = model.require_ready()
    dataset = DatasetRegistry().get(args.dataset)
    spec = model.spec.preprocessing
    layers = default_layers(module)
    args.batch_size = args.batch_size or default_batch(model.spec.input_shape[1])

    def raw() -> None:
        with torch.inference_mode():
            for _, x in iter_batches(dataset, spec, args.batch_size):
                module(x)

    def indexed() -> None:
        build_index(module, iter_batches(dataset, spec, args.batch_size), layers, 64, dataset.size)

    return model, module, dataset, spec, layers, raw, indexed


def pool_thread_only(args: argparse.Namespace) -> None:
    *_, dataset, _, _, raw, indexed = lenet(args)
    raw()
    indexed()
    where = "a pool thread in a process where no other thread computes (a server whose only work is BuildIndex)"
    compare(raw, indexed, dataset.size, args.repeats, where)


def compare(raw: Callable[[], None], indexed: Callable[[], None], size: int, repeats: int, where: str) -> None:
    """The two interleaved, ``repeats`` times each: images/s, ratio (of medians and paired), faults."""
    times: dict[str, list[float]] = {"raw": [], "index": []}
    faults = {"raw": 0, "index": 0}
    for _ in range(repeats):
        for name, fn in (("raw", raw), ("index", indexed)):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    raw_s, index_s = statistics.median(times["raw"]), statistics.median(times["index"])
    print(f"on {where}:")
    for name, label, seconds in (("raw", "raw forward", raw_s), ("index", "index pass ", index_s)):
        print(f"  {label}  {size / seconds:10,.0f} images/s  (median of {repeats}: {seconds:.2f} s; "
              f"minor page faults per pass {faults[name] // repeats:,})")  # fmt: skip
    paired = statistics.median(r / i for r, i in zip(times["raw"], times["index"], strict=True))
    print(f"  ratio index / raw images/s: {raw_s / index_s:.2f}, paired {paired:.2f}  (target >= 0.8)")
    pairs = zip(times["raw"], times["index"], strict=True)
    print("  per repeat, raw / index s: " + ", ".join(f"{r:.2f} / {i:.2f}" for r, i in pairs))


def photo_folder(root: Path, count: int = 64) -> Path:
    """``count`` crops (varied position and size) of scikit-image's sample photos, as PNGs."""
    import cv2
    import skimage.data

    photos = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket()]
    rng = np.random.default_rng(0)
    folder = root / "photos"
    folder.mkdir()
    for i in range(count):
        photo = photos[i % len(photos)]
        height, width = photo.shape[:2]
        side = int(rng.integers(min(height, width) // 2, min(height, width) + 1))
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = np.ascontiguousarray(photo[y : y + side, x : x + side, ::-1])
        cv2.imwrite(str(folder / f"{i:03d}.png"), crop)
    return folder


def imagenet_part(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        registry = DatasetRegistry({"photos": photo_folder(Path(root))})
        dataset = registry.get("photos")
        for name in ("alexnet", "vgg16"):
            torch.manual_seed(0)
            model = ModelHub([name], WeightsOptions(random=True)).get(name)
            module = model.require_ready()
            spec = model.spec.preprocessing
            batch_size = default_batch(model.spec.input_shape[1])
            batches = list(iter_batches(dataset, spec, batch_size))  # decoded once, outside the timing
            layers = default_layers(module)

            def raw(module: torch.nn.Module = module, batches: list = batches) -> None:
                with torch.inference_mode():
                    for _, x in batches:
                        module(x)

            def indexed(module: torch.nn.Module = module, batches: list = batches, layers: list = layers) -> None:
                build_index(module, iter(batches), layers, 64, dataset.size)

            raw()  # warm-up
            times: dict[str, list[float]] = {"raw": [], "index": []}
            for _ in range(repeats):
                for label, fn in (("raw", raw), ("index", indexed)):
                    start = time.perf_counter()
                    fn()
                    times[label].append(time.perf_counter() - start)
            raw_s, index_s = statistics.median(times["raw"]), statistics.median(times["index"])
            print(
                f"{name} (random weights), {dataset.size} photos, batch {batch_size}, {len(layers)} layers: "
                f"raw {dataset.size / raw_s:.1f} images/s, index {dataset.size / index_s:.1f} images/s, "
                f"ratio {raw_s / index_s:.2f}  (target >= 0.8)"
            )


def latency(index_dir: Path, dataset: str, queries: int) -> None:
    from client import InterpClient
    from server.app import create_server
    from server.config import Limits

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
