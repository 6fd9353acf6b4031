"""``interp-index MODEL DATASET``: build an activation index offline, the same files the server serves.

For datasets too big to index inside a request: the same pass (:mod:`server.stores.index`) and
the same key, written to the same index directory, so a server started with that ``--index-dir``
(and the same weights and datasets) answers TopActivations / NearestNeighbors from it at once.
Every server flag is accepted (``--index-dir``, ``--dataset NAME=DIR``, ``--weights``, ...).

``--engine ray`` runs the pass as a Ray Data pipeline (``pip install 'cnn-interp[ray]'``):
``--ray-address auto`` joins the cluster this machine belongs to, ``ray://HOST:10001`` a remote
one, unset starts a local Ray instance. The index is merged and written by this process (the
driver), under ``--index-dir`` on this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from server.offline_jobs import add_engine_options, at_least_one, chosen_layers, job_parser, served, throttled


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "interp-index",
        "Build an activation index (top-k inputs per unit, per-image features) for one model and dataset.",
        "fashion-mnist-train, fashion-mnist-test or a --dataset NAME",
        default_layers="every conv/ReLU/pool/linear",
    )
    parser.add_argument("--k", type=int, default=64, help="entries kept per channel (default 64)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward pass (default: 2048 for LeNet-size inputs, fewer for large ones)",
    )
    add_engine_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    from interp.dataset.index import default_layers
    from server.stores.index import IndexStore, default_batch, served_model

    at_least_one("interp-index", args, "k", "batch_size")
    config, model, dataset = served("interp-index", args.model, args.dataset, rest)
    module = model.require_ready()
    layers = chosen_layers("interp-index", model, args.layers, lambda: default_layers(module))
    store = IndexStore(config.index_dir)
    progress = throttled(lambda p: f"{p.images_done:,}/{p.total:,} images, {p.images_per_s:,.0f}/s")

    stored, reused, figures = store.build(
        module,
        **served_model(model),
        dataset=dataset,
        layers=layers,
        k=args.k,
        batch_size=args.batch_size or default_batch(model.spec.input_shape[1]),
        device=config.device,
        engine=args.engine,
        ray_address=args.ray_address,
        on_progress=progress,
    )
    print(file=sys.stderr)
    where = store.root / stored.folder
    if reused:
        print(f"index exists (reused): {where}")
    else:
        print(
            f"wrote {where}: {stored.meta['indexed']:,} images ({int(figures['skipped'])} skipped) in "
            f"{figures['seconds']:.1f} s, {figures['images_per_s']:,.0f} images/s, peak RSS growth "
            f"{figures['peak_rss_growth_mb']:.0f} MB, engine {args.engine}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
