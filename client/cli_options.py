"""`interp` options derived from the method table: positionals, request fields and Params fields
as options (help from the ``.proto`` comments), and the parsed options back into request values."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from client import images
from protos.interp_docs import FIELD_DOCS
from protos.methods import Method

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
_IMAGE_SUFFIXES = IMAGE_SUFFIXES


class UsageError(Exception):
    """A command-line value the CLI itself rejects (exit status 2)."""


def _class_target(value: str | None) -> int | str | None:
    """--target for saliency/attack: an integer is a class index, anything else a label."""
    if value is None:
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def _dream_layers(values: Sequence[str]) -> list[tuple[str, float] | str]:
    """--layer L or L:W (weight W)."""
    layers: list[tuple[str, float] | str] = []
    for value in values:
        name, sep, weight = value.rpartition(":")
        if sep and name:
            try:
                layers.append((name, float(weight)))
                continue
            except ValueError:
                raise UsageError(f"--layer {value!r}: the weight after ':' must be a number") from None
        layers.append(value)
    return layers


def image_set(option: str, values: Sequence[str] | None) -> str | list[Path] | None:
    """--positive/--negative: image files and/or directories of images, or one class name."""
    if not values:
        return None
    paths: list[Path] = []
    missing = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{option} {value}: the directory holds no image files")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            missing.append(value)
    if missing:
        if len(values) == 1:
            return values[0]  # a class name, e.g. "ankle boot"
        raise UsageError(f"{option}: no such file or directory: {', '.join(missing)}")
    return paths


def _split(values: Sequence[str] | None, kind: Callable[[str], Any], option: str) -> list[Any] | None:
    """Repeated and/or comma-separated values: ``--channel 0 --channel 1,2`` -> [0, 1, 2]."""
    if not values:
        return None
    out = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    out.append(kind(part.strip()))
                except ValueError:
                    raise UsageError(f"{option} {value!r}: expected {kind.__name__} values like 1,2,3") from None
    return out


_OPTION_NAMES = {
    "epsilons": ("--eps", "--epsilon"),
    "channels": ("--channel",),
    "layers": ("--layer",),
    "alphas": ("--alpha",),
    "image_size": ("--size", "--image-size"),
    "learning_rate": ("--lr", "--learning-rate"),
    "methods": ("--method",),
}

#: Help the CLI adds where a field's proto comment does not fit a command line.
_HELP = {
    "model": "a served model's name (see: interp models)",
    "image": "image file (PNG, JPEG, BMP, WebP, TIFF)",
    "source": "source image file",
    "layer": "layer name or alias (see: interp layers MODEL)",
    "channels": "channel index; repeat or give a list like 0,1,2",
    "epsilons": "epsilon in pixel units (0, 1]; repeat or give a list to sweep",
    "target": "class index or label (default: the predicted class; attack: untargeted)",
    "label": "the true class, index or label (default: the predicted class); a clean error counts as broken",
}

#: Request fields a command handles itself (images, oneofs), and per-command option overrides.
_SPECIAL = {"image", "source", "sets", "model"}


def _field_help(message: type[Message], name: str) -> str:
    own = FIELD_DOCS.get(f"{message.DESCRIPTOR.full_name}.{name}", "")
    class_filter = name == "label" and message.DESCRIPTOR.fields_by_name[name].message_type is None  # not a Target
    text = own if class_filter else _HELP.get(name) or own
    return text.replace("%", "%%")


def _class_filter(text: str) -> int | str:
    """--label of a class filter (an int field): an index, or a class name the client resolves."""
    try:
        return int(text)
    except ValueError:
        return text


def _scalar_type(field: Any) -> Callable[[str], Any]:
    if field.name == "label" and field.type == FieldDescriptor.TYPE_INT32:
        return _class_filter
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        return int
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float
    return str


def _add_field_option(parser: Any, message: type[Message], field: Any, method: Method, dest: str) -> None:
    name = field.name
    flags = _OPTION_NAMES.get(name, ("--" + name.replace("_", "-"),))
    help_text = _field_help(message, name)
    kwargs: dict[str, Any] = {"dest": dest, "help": help_text or None, "default": None}
    if name in method.required and dest.startswith("f_"):
        kwargs["required"] = True
    if name in method.choices:
        kwargs["choices"] = method.choices[name]
    if field.message_type is not None and field.message_type.name == "LayerWeight":
        kwargs.update(action="append", metavar="L[:W]", help="layer, optionally with a weight W; repeat for more")
    elif field.is_repeated:
        kwargs.update(action="append", metavar=name.rstrip("s").upper())
    elif field.type == FieldDescriptor.TYPE_BOOL:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif field.message_type is not None:
        kwargs["metavar"] = field.message_type.name.upper()
    else:
        kwargs.update(type=_scalar_type(field), metavar=name.upper())
    parser.add_argument(*flags, **kwargs)


def add_method_options(parser: argparse.ArgumentParser, method: Method) -> None:
    """Positionals, request options and Params options of one RPC, from the descriptors."""
    request = method.request
    for name in method.positionals:
        if name == "image" and takes_many(method):
            parser.add_argument(
                name,
                nargs="+",
                help="image file(s) or directories of images (PNG, JPEG, BMP, WebP, TIFF); several go in "
                "batched calls, one answer per image",
            )
            continue
        parser.add_argument(name, help=_field_help(request, name) or None)
    for field in request.DESCRIPTOR.fields:
        if field.name in method.positionals or field.name in _SPECIAL or field.name == method.params:
            continue
        if field.message_type is not None and field.message_type.name not in ("Target", "LayerWeight"):
            continue
        if field.name == "method":
            choices = method.choices.get("method", ())
            parser.add_argument(
                "--method",
                dest="f_method",
                choices=choices or None,
                default=choices[0] if choices else None,
                help=f"default {choices[0]}" if choices else None,
            )
            continue
        _add_field_option(parser, request, field, method, f"f_{field.name}")
    params = method.params_message
    if params is not None:
        group = parser.add_argument_group(f"{method.rpc} parameters (unset: the server's default, echoed back)")
        for field in params.DESCRIPTOR.fields:
            if field.name in request.DESCRIPTOR.fields_by_name:
                continue  # a request option of the same name already exists
            _add_field_option(group, params, field, method, f"p_{field.name}")


def takes_many(method: Method) -> bool:
    """Whether a command's image positional takes several files (its request has ``images``)."""
    return "images" in method.request.DESCRIPTOR.fields_by_name and "image" in method.positionals


def image_files(arguments: Sequence[str]) -> tuple[list[Path], bool]:
    """Image files named on the command line: files as given, directories expanded to their images.

    Returns the files (a directory's in sorted name order) and whether they are several (more
    than one argument, or any directory), i.e. whether the answer is one per image.
    """
    files: list[Path] = []
    many = len(arguments) > 1
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            many = True
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"directory {argument} holds no image files ({', '.join(sorted(_IMAGE_SUFFIXES))})")
            files.extend(found)
        else:
            files.append(path)
    return files, many


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file named on the command line; OSError (a local file error, exit
    status 1) when it is missing, unreadable, a directory or empty. The server decodes them."""
    return images.read_image_file(path, OSError)


def request_values(method: Method, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Request field values and Params values from parsed options (unset ones left out)."""
    values: dict[str, Any] = {}
    for name in method.positionals:
        values[name] = getattr(args, name)
    for field in method.request.DESCRIPTOR.fields:
        value = getattr(args, f"f_{field.name}", None)
        if value is None:
            continue
        if field.message_type is not None and field.message_type.name == "Target":  # target, label
            value = _class_target(value)
        elif field.message_type is not None and field.message_type.name == "LayerWeight":
            value = _dream_layers(value)
        elif field.is_repeated and field.message_type is None:
            flag = _OPTION_NAMES.get(field.name, ("--" + field.name.replace("_", "-"),))[0]
            value = _split(value, _scalar_type(field), flag)
        values[field.name] = value
    params: dict[str, Any] = {}
    message = method.params_message
    if message is not None:
        for field in message.DESCRIPTOR.fields:
            value = getattr(args, f"p_{field.name}", None)
            if value is not None:
                params[field.name] = value
    return values, params
