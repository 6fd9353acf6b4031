"""Atlas throughput, Ray engine ÷ local engine on the same machine (issue: >= 0.75x on 2 cores).

The same atlas job (LeNet ``relu2``, 16 units in batches of 4, ``--steps`` steps) in fresh
stores: the local engine with all torch threads in this process, then the Ray engine with 2
single-threaded CPU actors on a local Ray instance (``num_cpus=2``). Ray's start-up (``ray.init``)
is timed separately and not counted in its throughput; the index is built before either run.

Usage: ``.venv/bin/python -m benchmarks.bench_atlas_engines [--steps 128] [--layer relu2]`` (a job of
over a minute on 2 cores: ``--layer relu3 --steps 1200``, 120 units).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import load_report
from interp.synthesis.feature_vis_params import FeatureVisParams
from models.dataset_registry import DatasetRegistry
from models.hub import ModelHub
from server.app import weights_options
from server.atlas_command import run_atlas
from server.config import ServerConfig
from server.stores.atlas import atlas_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--layer", default="relu2")
    args = parser.parse_args()
    hub = ModelHub(["lenet"], weights_options(ServerConfig(download_weights=False)))
    hub.wait()
    model, dataset = hub.ready("lenet"), DatasetRegistry().get("fashion-mnist-test")
    base = FeatureVisParams(seed=0, steps=args.steps)
    print(load_report())
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        warm = FeatureVisParams(seed=0, steps=1)  # builds the index, outside the timings
        run_atlas(model, dataset, [args.layer], index_dir=index_dir, units="0", base=warm)
        start = time.perf_counter()
        done = run_atlas(model, dataset, [args.layer], index_dir=index_dir, batch=4, base=base)
        local_s = time.perf_counter() - start
        local = done["computed"] / local_s
        shutil.rmtree(atlas_dir(index_dir))  # the same index, a fresh atlas
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - start
        start = time.perf_counter()
        done = run_atlas(model, dataset, [args.layer], index_dir=index_dir, batch=4, base=base, engine="ray")
        ray_s = time.perf_counter() - start
        on_ray = done["computed"] / ray_s
        ray.shutdown()
    units = done["computed"]
    print(f"local engine ({torch.get_num_threads()} threads): {local:.3f} units/s ({units} units in {local_s:.1f} s)")
    print(
        f"ray engine (2 actors x 1 thread): {on_ray:.3f} units/s ({units} units in {ray_s:.1f} s); "
        f"ray.init {startup:.1f} s (not counted)"
    )
    print(f"ratio ray / local: {on_ray / local:.2f} (target >= 0.75)")
    print(load_report())


if __name__ == "__main__":
    main()
