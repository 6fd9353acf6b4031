"""What the offline job commands share (``interp-index``, ``interp-atlas``, ``interp-robustness``).

Each takes ``MODEL DATASET`` plus every server flag, runs on the local engine or on Ray, loads the
model and the dataset as the server would (the same weights resolution, the same malloc policy)
and reports progress on stderr at most twice a second. Import-light: torch comes with
:func:`served`, not with the parser, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.dataset_registry import Dataset
    from models.loaded import LoadedModel
    from server.config import ServerConfig

PROGRESS_EVERY_S = 0.5


def job_parser(
    prog: str, description: str, dataset_help: str, *, default_layers: str | None = None
) -> argparse.ArgumentParser:
    """The parser of one job command: ``--version``, ``MODEL`` and ``DATASET``, and with
    ``default_layers`` (what an unset ``--layers`` means, in words) ``--layers`` (read by
    :func:`chosen_layers`); the server's flags pass through."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{description} Other arguments are the server's flags (see interp-server --help)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('cnn-interp')}")
    parser.add_argument("model", help="a registered model, e.g. lenet")
    parser.add_argument("dataset", help=dataset_help)
    if default_layers is not None:
        parser.add_argument("--layers", default="", help=f"comma-separated layers (default: {default_layers})")
    return parser


def add_engine_options(parser: argparse.ArgumentParser, *, actors: int | None = None) -> None:
    """``--engine local|ray``, ``--ray-address`` and, for actor pools, ``--actors``."""
    if actors is not None:
        parser.add_argument("--actors", type=int, default=actors, help=f"Ray actors (default {actors})")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (auto, ray://HOST:PORT)")


def served(
    prog: str, model_name: str, dataset_name: str, rest: Sequence[str]
) -> tuple[ServerConfig, LoadedModel, Dataset]:
    """The server's config from ``rest``, the model once READY (a download waits) and the dataset."""
    from models.dataset_registry import DatasetRegistry, UnknownDataset
    from models.hub import ModelHub
    from server.app import weights_options
    from server.config import load_config
    from server.memory import keep_freed_memory

    config = load_config(rest, environ=None)
    keep_freed_memory(config.keep_freed_mb)  # as the server does
    hub = ModelHub([model_name], weights_options(config), device=config.device)
    hub.wait()  # a model whose weights download is LOADING until then
    model = hub.ready(model_name)
    try:
        dataset = DatasetRegistry(config.datasets, data_dir=config.data_dir).get(dataset_name)
    except UnknownDataset as exc:
        sys.exit(f"{prog}: {exc.args[0]}")
    return config, model, dataset


def at_least_one(prog: str, args: argparse.Namespace, *names: str) -> None:
    """Exit naming the flags when one of ``names`` (given, not None) is below 1."""
    if any(getattr(args, name) is not None and getattr(args, name) < 1 for name in names):
        flags = " and ".join("--" + name.replace("_", "-") for name in names)
        sys.exit(f"{prog}: {flags} must be >= 1")


def chosen_layers(command: str, model: LoadedModel, text: str, default: Callable[[], list[str]]) -> list[str]:
    """The layers of ``--layers`` (comma-separated names or aliases) as module paths; ``default()``
    when it names none. A name the model does not have ends ``command`` with the model's answer
    (the close names and the list), not a traceback."""
    from models.errors import UnknownLayer

    try:
        return [model.resolve_layer(name) for name in text.split(",") if name] or default()
    except UnknownLayer as exc:
        sys.exit(f"{command}: --layers: {exc.args[0]}")


def throttled(report: Callable[..., str]) -> Callable[..., None]:
    """A progress callback printing ``report(*args)`` on stderr at most every 0.5 s, and the last one.

    ``report`` returns the line; the callback's last argument carries ``done`` and ``total``
    attributes (``units_done``/``images_done`` and ``total``) that say when the last one came.
    """
    last = [0.0]

    def progress(*args: Any) -> None:
        now, state = time.monotonic(), args[-1]
        done = getattr(state, "units_done", getattr(state, "images_done", 0))
        if now - last[0] > PROGRESS_EVERY_S or done == state.total:
            last[0] = now
            print(f"\r{report(*args)}", end="", file=sys.stderr)

    return progress
