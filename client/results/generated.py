"""Result classes made from a reply's descriptor, for a reply no hand-written class is registered
for (a new RPC works in the SDK and the CLI before, or without, a class of its own).

The fields follow the rules of :mod:`client.results._build` (stamp flattened, ``resolved`` as
``params``, tensors as arrays, PNG bytes kept, nested messages as generated classes); ``save``
writes every non-empty ``*_png`` / ``png`` field, named after it (``grid_png``, the picture of the
whole answer, first), then those of each item of a repeated field as
``<field singular>_<rank>[_<image_id>][_<name>]`` (``neighbor_00_4``). A reply whose class needs
nothing more is served by a made class under its own public name (``NeighborsResult``).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass

from client.results._build import _ENVELOPE, STAMP_FIELDS, make_classes_with, reply, result_class
from client.results.base import _SavesImages
from protos.methods import METHODS

__all__ = ["generated"]

_SCALARS: dict[int, type] = {
    FieldDescriptor.TYPE_BOOL: bool,
    FieldDescriptor.TYPE_STRING: str,
    FieldDescriptor.TYPE_BYTES: bytes,
    FieldDescriptor.TYPE_FLOAT: float,
    FieldDescriptor.TYPE_DOUBLE: float,
}
_STAMP_TYPES = (str, bool, str, str, float, str)


class _Generated(_SavesImages):
    def _pngs(self) -> list[tuple[str, bytes]]:
        out, items = _own_pngs(self), []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, tuple) and value and isinstance(value[0], _Generated):
                for rank, item in enumerate(value):
                    stem = f"{f.name.removesuffix('s')}_{rank:02d}" + (
                        f"_{item.image_id}" if hasattr(item, "image_id") else ""
                    )
                    items += [(stem if name == "image" else f"{stem}_{name}", png) for name, png in _own_pngs(item)]
        return sorted(out, key=lambda named: named[0] != "grid") + items


def _own_pngs(result: Any) -> list[tuple[str, bytes]]:
    """The ``*_png`` / ``png`` fields of one result, named after them (``png``: ``image``)."""
    out = []
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, bytes) and (f.name == "png" or f.name.endswith("_png")):
            out.append((f.name.removesuffix("_png").removesuffix("png") or "image", value))
    return out


def generated(
    descriptor: Any, *, name: str | None = None, doc: str | None = None, base: type | None = None, eq: bool = False
) -> type:
    """The result class of ``descriptor``: the registered one, or one made (and registered) now.

    Args:
        name, doc: the made class's name and docstring (default: the message's name; the help of
            the method table's row whose reply it is).
        base: what a result adds to its fields (``_pngs``, properties, ``_fix``): a class first in
            the made class's bases, whose own annotations replace the derived ones of those
            fields (``box: tuple[int, int, int, int]``: the Box as a tuple) and whose class
            attributes of those names are their defaults.
        eq: compare results by value (the small records: predictions, preprocessing).
    """
    message = GetMessageClass(descriptor)
    known = result_class(message)
    if known is not None:
        return known
    spec = [_spec(base, field, hint) for field, hint in _fields(descriptor, _own_hints(base))]
    cls = dataclasses.make_dataclass(
        name or descriptor.name,
        spec,
        bases=(base, _Generated) if base is not None else (_Generated,),
        frozen=True,
        eq=eq,
        repr=False,
        kw_only=True,
    )
    helps = [m.help for m in METHODS if m.reply.DESCRIPTOR.full_name == descriptor.full_name]
    cls.__module__ = base.__module__ if base is not None else __name__
    cls.__doc__ = doc or (helps[0][:1].upper() + helps[0][1:] if helps else cls.__doc__)
    return reply(message)(cls)


def _own_hints(base: type | None) -> dict[str, Any]:
    """The annotations ``base`` itself declares (not its bases'), resolved."""
    if base is None:
        return {}
    hints = typing.get_type_hints(base)
    return {name: hints[name] for name in vars(base).get("__annotations__", {})}


def _spec(base: type | None, name: str, hint: Any) -> tuple[str, Any] | tuple[str, Any, Any]:
    """A field of the made class; a default ``base`` gives the field (``precomputed = False``) is kept."""
    if base is not None and name in vars(base):
        return name, hint, dataclasses.field(default=vars(base)[name])
    return name, hint


def _fields(descriptor: Any, own: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, annotation) of each field a result of ``descriptor`` holds, by the rules of ``_build``
    (``own``: the annotations a base gives instead)."""
    spec: list[tuple[str, Any]] = []
    for field in descriptor.fields:
        if field.name in _ENVELOPE:
            continue
        if field.name == "stamp":
            spec += list(zip(STAMP_FIELDS, _STAMP_TYPES, strict=True))
        elif field.name == "resolved":
            spec.append(("params", dict[str, Any]))
        elif field.message_type is not None and field.message_type.name == "PreprocessedInput":
            spec += [(field.name, np.ndarray | None), (f"{field.name}_png", bytes)]
        else:
            name = field.name.removeprefix("resolved_")
            spec.append((name, own[name] if name in own else _annotation(field)))
    return spec


def _annotation(field: FieldDescriptor) -> Any:
    kind = field.message_type
    if kind is not None and kind.GetOptions().map_entry:
        return dict[str, Any]
    if kind is not None and kind.name == "Tensor":
        return np.ndarray | None
    if field.enum_type is not None:
        one: Any = str
    elif kind is not None:
        one = generated(kind)
    else:
        one = _SCALARS.get(field.type, int)
    if field.is_repeated:
        return tuple[one, ...]
    return one | None if kind is not None else one


make_classes_with(generated)
