"""What the method table says about a request, checked before any work: required fields, choices
and which Params fields the chosen method reads (:func:`check_fields`); fields this server does
not know (:func:`refuse_unknown_fields`); the Params message as the method's dataclass
(:func:`params_from_proto`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from models.errors import shown
from models.loaded import LoadedModel
from protos.interp_docs import FIELD_DOCS
from protos.methods import Method
from server.errors import BadRequest


def check_fields(
    method: Method,
    request: Message,
    model: LoadedModel | None = None,
    rule: Callable[[Any], Sequence[str]] | None = None,
) -> tuple[dict[str, str], tuple[str, ...] | None]:
    """The table's ``required``, ``choices`` and ``applies`` on ``request``, before any work.

    Returns the scalar choice fields' values (an empty one replaced by its default) and the Params
    fields this request reads (None: all): the table's ``applies`` for its method, else the
    handler's own ``rule``. A set Params field that the method does not read is refused.
    """
    _check_required(method, request, model)
    chosen = _check_choices(method, request)
    if method.applies:
        applies: tuple[str, ...] | None = method.applies[chosen["method"]]
        _refuse_inapplicable(method, request, chosen["method"], applies or ())
    else:
        applies = tuple(rule(request)) if rule is not None else None
    return chosen, applies


def _check_required(method: Method, request: Message, model: LoadedModel | None) -> None:
    """The table's ``required`` fields: a repeated one needs an item, a message or optional one
    presence, a plain one a non-default value. The message says what the field takes."""
    for name in method.required:
        field = request.DESCRIPTOR.fields_by_name[name]
        if field_value(request, name)[0] if field.is_repeated or field.has_presence else getattr(request, name):
            continue
        what = f"at least one {name.removesuffix('s')}" if field.is_repeated else name
        hints = [FIELD_DOCS.get(f"{request.DESCRIPTOR.full_name}.{name}", "")]
        if name in method.choices:
            hints.append(f"valid {_plural(name)}: {', '.join(method.choices[name])}")
        if name in ("layer", "layers") and model is not None:
            hints.append(f"see DescribeModel for {model.spec.name}'s layers")
        raise BadRequest(f"{what} is required; " + "; ".join(h for h in hints if h), field=name)


def _check_choices(method: Method, request: Message) -> dict[str, str]:
    """The table's ``choices``: every value given is one of them. Returns the scalar choice fields'
    values, an empty one replaced by its ``defaults`` entry."""
    chosen = {}
    for name, valid in method.choices.items():
        value = getattr(request, name)
        listing = f"valid {_plural(name)}: {', '.join(valid)}"
        if request.DESCRIPTOR.fields_by_name[name].is_repeated:
            for i, item in enumerate(value):
                if item not in valid:
                    raise BadRequest(f"unknown {name.removesuffix('s')} {shown(item)}; {listing}", field=f"{name}[{i}]")
            continue
        value = value or method.defaults.get(name, "")
        if not value:
            raise BadRequest(f"{name} is required; {listing}", field=name)
        if value not in valid:
            raise BadRequest(f"unknown {method.rpc} {name} {shown(value)}; {listing}", field=name)
        chosen[name] = value
    return chosen


def _plural(name: str) -> str:
    return name if name.endswith("s") else f"{name}s"


def _refuse_inapplicable(method: Method, request: Message, choice: str, applies: Sequence[str]) -> None:
    """A Params field set that the chosen method does not read is an error, never ignored."""
    if method.params is None:
        return
    for field, _ in getattr(request, method.params).ListFields():
        if field.name not in applies:
            reads = f"it reads: {', '.join(applies)}" if applies else "it reads no parameters"
            readers = [value for value, names in method.applies.items() if field.name in names]
            reads += f"; {field.name} applies to {', '.join(readers)}" if readers else ""
            raise BadRequest(
                f"parameter {field.name} does not apply to {choice} ({reads})", field=f"{method.params}.{field.name}"
            )


def field_value(message: Message, path: str) -> tuple[bool, Any, bool]:
    """(is set, value, repeated) of ``field`` or ``params.field``; a repeated field gives its length."""
    head, _, rest = path.partition(".")
    if rest:
        message, path = getattr(message, head), rest
    descriptor = message.DESCRIPTOR.fields_by_name[path]
    if descriptor.is_repeated:
        value = getattr(message, path)
        return len(value) > 0, len(value), True
    return message.HasField(path), getattr(message, path), False


def refuse_unknown_fields(message: Message, prefix: str) -> None:
    """A field this server's contract does not define (a newer client) is an error, never dropped."""
    numbers = sorted({item.field_number for item in UnknownFieldSet(message)})  # type: ignore[attr-defined]
    if numbers:
        name = message.DESCRIPTOR.full_name
        raise BadRequest(
            f"{name} carries field number(s) {', '.join(map(str, numbers))} that this server does not know "
            "(a client built from a newer interp.proto?); see GetServerInfo for the server's version",
            field=f"{prefix}#{numbers[0]}",
        )


def params_from_proto(message: Message, cls: type, path: str = "params") -> Any:
    """The method's dataclass from a Params message: only fields that are set; unknown ones refused.

    Unset optional fields stay at the dataclass default (None = "the model's default"), so the
    defaults live in one place: the method's own dataclass. Non-finite floats are refused.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for field, value in message.ListFields():
        if field.name not in names:
            raise BadRequest(
                f"parameter {field.name} is not understood by this server's {cls.__name__}",
                field=f"{path}.{field.name}",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(
                f"parameter {field.name} must be a finite number, got {value}", field=f"{path}.{field.name}"
            )
        kwargs[field.name] = value
    return cls(**kwargs)
