"""The `interp` commands in one table: per command of the method table, how its result reads as
text, what ``-o`` writes, and the few options and steps that are not request fields.

A command missing here (a new RPC with ``command=`` in ``protos/methods.py``) still works: its
options come from the request, its call is generic, and :func:`client.cli_text.generic_text`
prints its result. ``-o`` means the same in every command (:func:`client.results.is_folder`): a
path ending in ``/``, an existing directory or a path without an extension is a folder of files;
any other path is a file (its extension kept) with the other images beside it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor

from client import cli_text as t
from client.cli_options import UsageError, image_set
from client.requests import fill_set
from client.results import beside, file_part
from protos import interp_pb2 as pb
from protos.methods import Method

Formatter = Callable[[Any, argparse.Namespace], str]


@dataclass(frozen=True)
class Command:
    text: Formatter = t.generic_text  # how the result reads
    output: str = ""  # what -o receives ("": the command writes no files)
    options: Callable[[argparse.ArgumentParser], None] | None = None  # options that are no request field
    prepare: Callable[[argparse.Namespace, dict[str, Any]], None] | None = None  # request values from them
    files: Callable[[Any, argparse.Namespace], list[Path]] | None = None  # files besides save()
    output_optional: bool = False  # -o may be left out (then no files are written)
    resolve: Callable[[Any, dict[str, Any]], None] | None = None  # request values the server's lists decide


def _interpolate_options(p: argparse.ArgumentParser) -> None:
    for which in ("positive", "negative"):
        p.add_argument(
            f"--{which}", nargs="+", action="extend", metavar="X", help="images/directories, or one class name"
        )
    p.add_argument(
        "--target", dest="target_image", metavar="IMAGE", help="interpolate towards this image instead of sets"
    )


def _interpolate_values(args: argparse.Namespace, values: dict[str, Any]) -> None:
    positive = image_set("--positive", args.positive)
    negative = image_set("--negative", args.negative)
    if args.target_image is not None and (positive is not None or negative is not None):
        raise UsageError("give either --target IMAGE or --positive/--negative, not both")
    if args.target_image is None and (positive is None or negative is None):
        raise UsageError("give --positive and --negative (images, directories or one class name each), or --target")
    if args.target_image is not None:
        values["target"] = args.target_image
        return
    sets = pb.AttributeSets()
    fill_set(sets, "positive", positive)  # type: ignore[arg-type]
    fill_set(sets, "negative", negative)  # type: ignore[arg-type]
    values["sets"] = sets


def _npy_option(what: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--npy", action="store_true", help=f"also save {what}")

    return add


def _activations_values(args: argparse.Namespace, values: dict[str, Any]) -> None:
    if args.output is None:  # the table alone: no grids to draw
        if args.npy:
            raise UsageError("--npy needs -o (where to write the arrays)")
        values.setdefault("include_pngs", False)
    values.setdefault("include_tensors", bool(args.npy))  # tensors travel only when they are saved


def _activations_files(result: Any, args: argparse.Namespace) -> list[Path]:
    files = []
    for layer in result.layers if args.npy else ():
        if layer.activation is not None:
            files.append(beside(args.output, file_part(layer.requested or layer.layer), ".npy"))
            np.save(files[-1], layer.activation)
    return files


def _saliency_files(result: Any, args: argparse.Namespace) -> list[Path]:
    if not args.npy or result.map is None:
        return []
    path = beside(args.output, "", ".npy")
    np.save(path, result.map)
    return [path]


def _dataset_class(c: Any, values: dict[str, Any]) -> None:
    """dataset-images --label: a class name (any case) becomes the dataset's class index."""
    if values.get("label") is not None:
        values["label"] = c.dataset_class(values.get("dataset", ""), values["label"])


def _embed_files(result: Any, args: argparse.Namespace) -> list[Path]:
    return [result.write_html(args.html)] if args.html is not None else []


def _place_values(args: argparse.Namespace, values: dict[str, Any]) -> None:
    values["images"] = list(args.place_images)


def _html_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", type=Path, metavar="FILE", help="also write the interactive page (self-contained HTML)")


def _place_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", dest="place_images", action="append", required=True, metavar="IMAGE",
                   help="image file to place; repeat for more")  # fmt: skip


COMMANDS: dict[str, Command] = {
    "models": Command(t.text_models),
    "layers": Command(t.text_layers),
    "info": Command(t.text_info),
    "classify": Command(t.text_classify),
    "activations": Command(
        t.text_activations,
        "LAYER.png per layer, input.png",
        _npy_option("each activation as LAYER.npy"),
        _activations_values,
        _activations_files,
        output_optional=True,
    ),  # fmt: skip
    "kernels": Command(t.text_kernels, "the kernel grid"),
    "saliency": Command(
        t.text_saliency, "overlay, heatmap, input", _npy_option("the map as .npy beside"), files=_saliency_files
    ),  # fmt: skip
    "attack": Command(t.text_attack, "adversarial and perturbation per epsilon, input"),
    "visualize": Command(t.text_visualize, "the grid, then channel_NNNN per channel"),
    "dream": Command(t.text_dream, "the dream, input"),
    "interpolate": Command(t.text_interpolate, "alpha_A per alpha, input", _interpolate_options, _interpolate_values),
    "minimal-attack": Command(t.text_minimal_attack, "adversarial, perturbation, input"),
    "robustness": Command(t.text_robustness, "the accuracy-vs-epsilon curve"),
    "datasets": Command(t.text_datasets),
    "precomputed": Command(t.text_precomputed),
    "index": Command(t.text_index),
    "top": Command(
        t.text_top,
        "the grid, then each entry's receptive-field crop and whole image with its box (--entry-pngs); "
        "--projections as .npy",
    ),
    "neighbors": Command(t.text_neighbors, "the grid of neighbours, input", output_optional=True),
    "embed": Command(t.text_embed, "the scatter, atlas", _html_option, files=_embed_files),
    "dataset-images": Command(output="its images", output_optional=True, resolve=_dataset_class),
    "place": Command(t.text_place, "the map with the images marked, each input", _place_option, _place_values),
}


def command(method: Method) -> Command:
    """The row of a method's command; one without a row gets the generic text and, when its reply
    holds PNGs, an optional ``-o``."""
    row = COMMANDS.get(method.command)
    if row is not None:
        return row
    return Command(output="its images", output_optional=True) if _has_pngs(method.reply.DESCRIPTOR) else Command()


def _has_pngs(descriptor: Any, depth: int = 0) -> bool:
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_BYTES and (field.name == "png" or field.name.endswith("_png")):
            return True
        if field.message_type is not None and depth < 3 and _has_pngs(field.message_type, depth + 1):
            return True
    return False
