"""``interp-robustness MODEL DATASET --method pgd --eps 0.01,0.03``: AttackDataset as an offline job.

The same images (the first ``--limit`` of DATASET, preprocessed as the model's input), the same
parameters and the same answer as the AttackDataset RPC, computed in this process or on Ray
(``--engine ray``: image blocks on actors, :mod:`server.robustness_job`) and written into the
results store beside the index (:mod:`server.stores.results`): the curve, the per-image minimal
eps and the PNG. A server started with the same ``--index-dir`` answers the identical
AttackDataset request from it at once (``precomputed``), so the explorer's robustness page shows
it. Every server flag is accepted (``--index-dir``, ``--dataset NAME=DIR``, ``--weights``, ...);
the server's ``max_dataset_images`` does not apply to this command.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from interp.attacks.robustness import AttackDatasetParams, resolve_dataset_params
from models.dataset_registry import Dataset
from models.loaded import LoadedModel
from server.handlers.attacks import attack_images, robustness_reply
from server.offline_jobs import add_engine_options, at_least_one, job_parser, served, throttled
from server.robustness_job import DEFAULT_ACTORS, RobustnessProgress, run_robustness
from server.stores.results import ResultsStore, results_dir, robustness_key


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "interp-robustness",
        "Robust accuracy vs epsilon over a dataset (AttackDataset offline), stored where the server "
        "answers AttackDataset from it.",
        "fashion-mnist-test or a --dataset NAME",
    )
    parser.add_argument("--method", default="pgd", help="comma-separated: fgsm, bim, pgd, deepfool_linf; deepfool_l2")
    parser.add_argument("--eps", required=True, help="comma-separated epsilons in pixel units, e.g. 0.01,0.03")
    parser.add_argument("--limit", type=int, default=1000, help="the first N images (default 1000)")
    parser.add_argument("--steps", type=int, default=None, help="attack steps (default: the method's)")
    parser.add_argument("--seed", type=int, default=0, help="random start seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per block (default 100)")
    parser.add_argument("--predicted-labels", action="store_true", help="attack the predictions, not true labels")
    add_engine_options(parser, actors=DEFAULT_ACTORS)
    return parser


def run_and_store(
    model: LoadedModel,
    dataset: Dataset,
    *,
    index_dir: Path,
    methods: list[str],
    epsilons: list[float],
    params: AttackDatasetParams,
    limit: int,
    true_labels: bool = True,
    engine: str = "local",
    actors: int = DEFAULT_ACTORS,
    ray_address: str | None = None,
    device: str = "cpu",
    on_progress: Callable[[RobustnessProgress], None] | None = None,
) -> tuple[Path, Any]:
    """Attack the first ``limit`` images, store the AttackDatasetResult; returns its folder and the reply."""
    module = model.require_ready()
    resolved = resolve_dataset_params(params, methods, model.spec.num_classes)
    x, y, skipped = attack_images(dataset, model.spec, limit, true_labels, device)
    result = run_robustness(
        module, x, y, methods=methods, epsilons=epsilons, params=resolved, engine=engine, actors=actors,
        ray_address=ray_address, on_progress=on_progress,
    )  # fmt: skip
    title = f"{model.spec.name} on {dataset.name} ({len(x)} images)"
    reply = robustness_reply(result, dataset.name, len(x), skipped, title, true_labels)
    key = robustness_key(model.weights.sha256, dataset.manifest(), model.spec.preprocessing, methods, epsilons,
                         resolved, limit, true_labels)  # fmt: skip
    minimal = {curve.method: curve.minimal.numpy() for curve in result.curves}
    meta = {"model": model.spec.name, "weights_sha256": model.weights.sha256, "dataset": dataset.name,
            "manifest": dataset.manifest(),
            "methods": methods, "epsilons": epsilons, "limit": limit, "true_labels": true_labels, "engine": engine,
            "images": len(x), "accuracy": {c.method: c.accuracy for c in result.curves}}  # fmt: skip
    store = ResultsStore(results_dir(index_dir))
    folder = store.write(key, reply.SerializeToString(), reply.curve_png, minimal, meta)
    return folder, reply


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    from server.stores.index import default_index_dir

    try:
        epsilons = [float(e) for e in args.eps.split(",") if e]
    except ValueError:
        sys.exit(f"interp-robustness: --eps {args.eps!r} is not a comma-separated list of numbers")
    at_least_one("interp-robustness", args, "limit")
    config, model, dataset = served("interp-robustness", args.model, args.dataset, rest)
    params = AttackDatasetParams(steps=args.steps, seed=args.seed, batch_size=args.batch_size)

    def report(p: RobustnessProgress) -> str:
        where = f" ({p.stage})" if p.stage else ""
        return f"{p.images_done:,}/{p.total:,} images{where}, {p.images_per_s:.1f}/s, ETA {p.eta_s:.0f} s"

    progress = throttled(report)

    started = time.perf_counter()
    try:
        folder, reply = run_and_store(
            model, dataset, index_dir=config.index_dir or default_index_dir(), methods=args.method.split(","),
            epsilons=epsilons, params=params, limit=args.limit, true_labels=not args.predicted_labels,
            engine=args.engine, actors=args.actors, ray_address=args.ray_address, device=config.device,
            on_progress=progress,
        )  # fmt: skip
    except ValueError as exc:  # InvalidInput and bad engine
        sys.exit(f"interp-robustness: {exc}")
    print(file=sys.stderr)
    for curve in reply.curves:
        points = ", ".join(f"{e:g}: {a:.3f}" for e, a in zip(reply.epsilons, curve.accuracy, strict=True))
        print(f"{curve.method}: clean {reply.clean_accuracy:.3f}; {points}")
    print(f"{reply.images} images in {time.perf_counter() - started:.1f} s, engine {args.engine}; wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
