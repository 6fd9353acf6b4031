"""Requests filled from Python values by field name and type (the SDK's and the CLI's one path).

:func:`build_request` fills a method's request message from keyword values and its Params
message from ``**params``; each value is converted by the field's descriptor type, failing fast
with the expected form named (TypeError / ValueError before any call).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from client.images import ImageLike, add_image, image_message
from protos import interp_pb2 as pb
from protos.methods import Method

__all__ = ["Images", "LayerSpec", "build_request", "fill_set", "image_items", "is_many"]


def build_request(method: Method, values: Mapping[str, Any], params: Mapping[str, Any], caller: str) -> Message:
    """Fill ``method.request`` by field name: ``values`` are request fields, ``params`` the Params fields.

    None leaves a field unset (the server's default). Each value is converted by the field's
    type: Image fields take any :data:`ImageLike`, Target fields an index or a label, repeated
    fields one value or a sequence (integers also ``"0,1,2"``), LayerWeight lists names,
    ``(name, weight)`` pairs or a mapping. Unknown names raise TypeError listing the valid ones.
    """
    request = method.request()
    fields = method.request.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        if value is None:
            continue
        if name not in fields:
            raise TypeError(f"{caller}(): {method.request.__name__} has no field {name!r}")
        _set_field(request, fields[name], value, caller)
    if params:
        if method.params is None:
            raise TypeError(f"{caller}() takes no method parameters, got {', '.join(map(repr, params))}")
        message_cls = type(getattr(request, method.params))
        getattr(request, method.params).CopyFrom(_params_message(message_cls, params, caller))
    return request


def _set_field(message: Message, field: Any, value: Any, caller: str) -> None:
    name = field.name
    kind = field.message_type.name if field.message_type is not None else None
    if field.is_repeated:
        target = getattr(message, name)
        if kind == "Image":
            if isinstance(value, np.ndarray):
                images: list[Any] = list(value) if value.ndim == 4 else [value]
            else:
                images = [value] if isinstance(value, (str, *_SINGLE_IMAGE)) else list(value)
            for image in images:
                add_image(target, image)
        elif kind == "LayerWeight":
            target.extend(_layer_weights(value))
        elif field.type == FieldDescriptor.TYPE_STRING:
            target.extend(_names(name, value))
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            target.extend(_floats(name, value))
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            target.extend(_ints(name, value))
        else:
            raise TypeError(f"{caller}(): field {name} is not settable from Python values")
        return
    if kind == "Image":
        getattr(message, name).CopyFrom(image_message(value))
    elif kind == "Target":
        _set_target(message, value, name)
    elif kind is not None:
        if not isinstance(value, Message):
            raise TypeError(f"{caller}(): {name} must be a {kind} message, got {type(value).__name__}")
        getattr(message, name).CopyFrom(value)
    else:
        if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            value = _int(name, value)
        try:
            setattr(message, name, _plain(value))
        except (TypeError, ValueError) as error:
            raise _setter_error(f"{caller}(): {name}={value!r}", field, error) from None


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (protobuf setters want the latter)."""
    return value.item() if isinstance(value, np.generic) else value


def _params_message(cls: type[Message], params: Mapping[str, Any], caller: str) -> Message:
    """Fill a *Params message from keyword arguments; unknown names -> TypeError listing the valid ones."""
    valid = [field.name for field in cls.DESCRIPTOR.fields]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"valid parameters: {', '.join(valid)}"
        )
    message = cls()
    for name, value in params.items():
        if value is None:
            continue  # the server's default
        try:
            setattr(message, name, _plain(value))
        except (TypeError, ValueError) as error:
            field = cls.DESCRIPTOR.fields_by_name[name]
            raise _setter_error(f"{caller}(): parameter {name}={value!r}", field, error) from None
    return message


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def _setter_error(what: str, field: Any, error: Exception) -> Exception:
    """What protobuf's setter refused, said as the user sees it: an int beyond the field's range
    (ValueError), or a value of the wrong type (TypeError)."""
    if field.type in _INT_RANGES and isinstance(error, ValueError):
        low, high = _INT_RANGES[field.type]
        return ValueError(f"{what} is out of range: at most {high:,}, at least {low:,}")
    expected = _TYPE_NAMES.get(field.type, "scalar")
    return TypeError(f"{what} has the wrong type ({expected} expected): {error}")


_TYPE_NAMES = {
    FieldDescriptor.TYPE_DOUBLE: "float",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int",
    FieldDescriptor.TYPE_INT32: "int",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "str",
}


def _set_target(request: Message, target: int | str | None, name: str = "target") -> None:
    """Fill the Target field ``name`` (``target``, or ``label`` for a true class) from an index or a label."""
    if target is None:
        return
    if isinstance(target, bool):
        raise TypeError(f"{name} must be a class index (int) or label (str), not bool")
    field = getattr(request, name)
    if isinstance(target, int | np.integer):
        field.index = int(target)
    elif isinstance(target, str):
        if not target.strip():
            raise ValueError(f"{name} label is empty")
        field.label = target
    else:
        raise TypeError(f"{name} must be a class index (int) or label (str), got {type(target).__name__}")


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _ints(name: str, values: int | str | Sequence[int]) -> list[int]:
    if isinstance(values, str):  # "0,1,2" (the CLI's --channel 0,1,2)
        try:
            items: list[Any] = [int(part) for part in values.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"{name} must be integers like 0,1,2, got {values!r}") from None
    else:
        items = [values] if isinstance(values, int | np.integer) else list(values)
    if not items:
        raise ValueError(f"{name} must name at least one value")
    return [_int(name, v) for v in items]


def _floats(name: str, values: float | Sequence[float]) -> list[float]:
    if isinstance(values, str | bytes):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {values!r}")
    if isinstance(values, int | float | np.number):
        items = [values]
    elif isinstance(values, np.ndarray):
        items = values.ravel().tolist()
    else:
        items = list(values)
    if not items:
        raise ValueError(f"{name} must name at least one value")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise TypeError(f"{name} must be numbers, got {v!r}")
        out.append(float(v))
    return out


def _names(name: str, values: str | Sequence[str]) -> list[str]:
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        raise ValueError(f"{name} must name at least one layer")
    for v in items:
        if not isinstance(v, str) or not v:
            raise TypeError(f"{name} must be non-empty strings, got {v!r}")
    return items


LayerSpec = str | Sequence[str | tuple[str, float]] | Mapping[str, float]


def _layer_weights(layers: LayerSpec) -> list[pb.LayerWeight]:
    if isinstance(layers, str):
        pairs: list[tuple[str, float | None]] = [(layers, None)]
    elif isinstance(layers, Mapping):
        pairs = [(name, weight) for name, weight in layers.items()]
    else:
        pairs = []
        for item in layers:
            if isinstance(item, str):
                pairs.append((item, None))
            elif isinstance(item, tuple | list) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise TypeError(f"layers items must be names or (name, weight) pairs, got {item!r}")
    if not pairs:
        raise ValueError("layers must name at least one layer")
    messages = []
    for name, weight in pairs:
        if not isinstance(name, str) or not name:
            raise TypeError(f"layer names must be non-empty strings, got {name!r}")
        message = pb.LayerWeight(layer=name)
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, int | float | np.number):
                raise TypeError(f"layer weight for {name!r} must be a number, got {weight!r}")
            message.weight = float(weight)
        messages.append(message)
    return messages


_SINGLE_IMAGE = (bytes, bytearray, memoryview, os.PathLike, pb.Image)

#: Several images for one of the many-image methods: a list, a tuple, any iterable (read lazily)
#: or a (N, H, W[, C]) array.
Images = Iterable[ImageLike]


def is_many(image: object) -> bool:
    """Whether an image argument holds several images (a list, tuple, iterator or 4-D array)."""
    if isinstance(image, np.ndarray):
        return image.ndim == 4
    return isinstance(image, Iterable) and not isinstance(image, (str, *_SINGLE_IMAGE))


def image_items(images: Images) -> Iterator[ImageLike]:
    if isinstance(images, np.ndarray):
        return iter(list(images))
    return iter(images)


def fill_set(sets: pb.AttributeSets, which: str, value: str | ImageLike | Sequence[ImageLike]) -> None:
    """positive/negative: a class name (str), one image, a (N, H, W[, C]) array, or a list of images."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{which} class name is empty")
        setattr(sets, f"{which}_class", value)
        return
    if isinstance(value, _SINGLE_IMAGE):
        images: list[Any] = [value]
    elif isinstance(value, np.ndarray):
        images = list(value) if value.ndim == 4 else [value]
    else:
        images = list(value)
    if not images:
        raise ValueError(f"{which} set is empty")
    target = getattr(sets, which)
    for image in images:
        add_image(target, image)
