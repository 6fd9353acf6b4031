"""``interp-atlas MODEL DATASET``: precompute a model atlas (per unit: feature visualization + top-9).

For every unit of the given layers (default: every convolution and linear layer), the feature
visualization with the layer's default preset and a fixed seed (channels optimized in batches of
``--batch``), plus its top-9 entries from the activation index of DATASET (built first, on the
same engine, when missing). Units are written one by one into the atlas store beside the index
(:mod:`server.stores.atlas`): a killed job, run again, computes only the missing units, and a
finished one computes nothing. A server started with the same ``--index-dir`` answers
VisualizeFilter from the atlas (``from_atlas``) when a request is one of its batches with the same
parameters — the explorer's layer pages ask for exactly those (16 units per page).

Every server flag is accepted (``--index-dir``, ``--dataset NAME=DIR``, ``--weights``, ...).
``--engine ray`` runs the batches on Ray actors (``pip install 'cnn-interp[ray]'``); see
``interp-index`` for ``--ray-address``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from interp.synthesis.feature_vis_params import FeatureVisParams
from interp.synthesis.feature_vis_params import resolve as resolve_feature_vis
from models.dataset_registry import Dataset
from models.loaded import LoadedModel
from server.atlas_job import DEFAULT_ACTORS, AtlasLayerJob, AtlasProgress, run_layer
from server.offline_jobs import add_engine_options, at_least_one, chosen_layers, job_parser, served, throttled
from server.stores.atlas import ATLAS_K, AtlasKey, AtlasStore, atlas_dir, params_json
from server.stores.index import IndexStore, IndexUnavailable, base_key, default_batch, served_model

DEFAULT_BATCH = 16  # the explorer's units per layer page
ATLAS_TYPES = ("Conv2d", "Linear")


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "interp-atlas",
        "Precompute a model atlas: every unit's feature visualization and top-9 dataset entries.",
        "the dataset of the top-9 entries (its index is built when missing)",
        default_layers="every conv and linear layer",
    )
    parser.add_argument("--units", default="", help="units of each layer, e.g. 0-15,32 (default: all)")
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help=f"channels per batch (default {DEFAULT_BATCH})"
    )
    parser.add_argument("--steps", type=int, default=None, help="optimization steps (default: the preset's)")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="the fixed seed (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (local engine; Ray actors use 1)")
    add_engine_options(parser, actors=DEFAULT_ACTORS)
    return parser


def parse_units(text: str, channels: int) -> list[int]:
    """``"0-3,7"`` -> [0, 1, 2, 3, 7] (empty: every unit), each checked against the layer's units."""
    if not text:
        return list(range(channels))
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"--units: {part!r} is not N or N-M") from None
        if not 0 <= first <= last < channels:
            raise ValueError(f"--units: {part!r} out of range 0..{channels - 1}")
        units.extend(u for u in range(first, last + 1) if u not in units)
    return units


def layer_params(model: LoadedModel, layer: str, base: FeatureVisParams) -> FeatureVisParams:
    """``base`` resolved as VisualizeFilter resolves it for ``layer`` (its default preset)."""
    info = next(i for i in model.layers if i.name == layer)
    in_channels, side = model.spec.input_shape[0], model.spec.input_shape[1]
    return resolve_feature_vis(base, in_channels=in_channels, input_size=side, dense=len(info.output_shape) == 1)


def run_atlas(
    model: LoadedModel,
    dataset: Dataset,
    layers: Sequence[str],
    *,
    index_dir: Path,
    units: str = "",
    batch: int = DEFAULT_BATCH,
    base: FeatureVisParams | None = None,
    engine: str = "local",
    threads: int | None = None,
    actors: int = DEFAULT_ACTORS,
    ray_address: str | None = None,
    device: str = "cpu",
    on_progress: Callable[[str, AtlasProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The atlas of ``layers`` (the index first when missing); returns counts and the folders written."""
    module = model.require_ready()
    served = served_model(model)
    index_store = IndexStore(index_dir)
    index_base = base_key(served["weights_sha256"], dataset.manifest(), served["spec"])
    missing = [layer for layer in layers if index_store.find(index_base, layer, ATLAS_K) is None]
    if missing:  # the index first, on the same engine
        index_store.build(
            module, **served, dataset=dataset, layers=missing, k=ATLAS_K,
            batch_size=default_batch(model.spec.input_shape[1]), device=device, engine=engine,
            ray_address=ray_address, should_stop=should_stop,
        )  # fmt: skip
    store = AtlasStore(atlas_dir(index_store.root))
    totals: dict[str, Any] = {"computed": 0, "reused": 0, "folders": []}
    for layer in layers:
        found = index_store.find(index_base, layer, ATLAS_K)
        if found is None:
            raise IndexUnavailable(f"no index of {layer} on {dataset.name} in {index_store.root}")
        info = next(i for i in model.layers if i.name == layer)
        params = layer_params(model, layer, base or FeatureVisParams())
        if params.start_from_mean:
            raise ValueError("the atlas does not support start_from_mean")
        job = AtlasLayerJob(layer, parse_units(units, info.channels), batch, params,
                            model.spec.input_shape[0], model.spec.input_shape[1])  # fmt: skip
        key = AtlasKey(served["weights_sha256"], layer, params_json(params), batch, index_base)
        folder = store.open(key, {"model": model.spec.name, "dataset": dataset.name, "index": found.folder})
        report = None if on_progress is None else partial(on_progress, layer)
        counts = run_layer(
            store, key, job, module, found, engine=engine, threads=threads, actors=actors, ray_address=ray_address,
            on_progress=report, should_stop=should_stop,
        )  # fmt: skip
        totals["computed"] += counts["computed"]
        totals["reused"] += counts["reused"]
        totals["folders"].append(str(folder))
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    from server.stores.index import default_index_dir

    at_least_one("interp-atlas", args, "batch", "steps")
    config, model, dataset = served("interp-atlas", args.model, args.dataset, rest)
    kinds = [i.name for i in model.layers if i.type in ATLAS_TYPES]
    layers = chosen_layers("interp-atlas", model, args.layers, lambda: kinds)

    def report(layer: str, p: AtlasProgress) -> str:
        return f"{layer}: {p.units_done}/{p.total} units, {p.units_per_s:.2f}/s, ETA {p.eta_s:.0f} s"

    progress = throttled(report)

    base = FeatureVisParams(seed=args.seed, steps=args.steps, image_size=args.image_size)
    started = time.perf_counter()
    try:
        totals = run_atlas(
            model, dataset, layers, index_dir=config.index_dir or default_index_dir(), units=args.units,
            batch=args.batch, base=base, engine=args.engine, threads=args.threads, actors=args.actors,
            ray_address=args.ray_address, device=config.device, on_progress=progress,
        )  # fmt: skip
    except ValueError as exc:
        sys.exit(f"interp-atlas: {exc}")
    print(file=sys.stderr)
    print(
        f"atlas of {model.spec.name} ({', '.join(layers)}): {totals['computed']} units computed, "
        f"{totals['reused']} already stored, {time.perf_counter() - started:.1f} s, engine {args.engine}"
    )
    for folder in totals["folders"]:
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
