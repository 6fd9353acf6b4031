"""The shared path enforces the method table: every choice list of every Method, its defaults,
its required fields and which Params fields each method reads (``applies``)."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from protos.methods import METHODS, Method
from server.errors import BadRequest
from server.request_checks import check_fields

CHOICES = [(m, name) for m in METHODS for name in m.choices]
WITH_APPLIES = [(m, value) for m in METHODS for value in m.applies]


def _fill(message: Message, name: str, value: object = None) -> None:
    """Give ``message.name`` a value that counts as set (``value`` when given)."""
    field = message.DESCRIPTOR.fields_by_name[name]
    scalar = {
        FieldDescriptor.TYPE_STRING: "x",
        FieldDescriptor.TYPE_BOOL: True,
        FieldDescriptor.TYPE_FLOAT: 0.5,
        FieldDescriptor.TYPE_DOUBLE: 0.5,
    }.get(field.type, 1)
    if field.is_repeated:
        items = getattr(message, name)
        items.add() if field.message_type is not None else items.append(scalar if value is None else value)
    elif field.message_type is not None:
        getattr(message, name).SetInParent()
    else:
        setattr(message, name, scalar if value is None else value)


def _request(table: Method, **choice: str) -> Message:
    """A request with every required field set and each choice field at its first valid value."""
    request = table.request()
    for name in table.required:
        if name not in table.choices:
            _fill(request, name)
    for name, valid in table.choices.items():
        _fill(request, name, choice.get(name, valid[0]))
    return request


@pytest.mark.parametrize(("method", "name"), CHOICES, ids=[f"{m.rpc}.{n}" for m, n in CHOICES])
def test_every_choice_is_accepted_and_anything_else_refused(method: Method, name: str) -> None:
    valid = method.choices[name]
    repeated = method.request.DESCRIPTOR.fields_by_name[name].is_repeated
    for value in valid:
        chosen, _ = check_fields(method, _request(method, **{name: value}))
        assert repeated or chosen[name] == value
    with pytest.raises(BadRequest) as info:
        check_fields(method, _request(method, **{name: "no-such-choice"}))
    assert info.value.field == (f"{name}[0]" if repeated else name)
    assert "'no-such-choice'" in str(info.value) and ", ".join(valid) in str(info.value)


@pytest.mark.parametrize(("method", "name"), CHOICES, ids=[f"{m.rpc}.{n}" for m, n in CHOICES])
def test_an_empty_choice_takes_its_default_or_is_refused(method: Method, name: str) -> None:
    request = _request(method)
    request.ClearField(name)
    if name in method.defaults:
        assert check_fields(method, request)[0][name] == method.defaults[name]
        return
    with pytest.raises(BadRequest) as info:
        check_fields(method, request)
    assert info.value.field == name and "is required" in str(info.value)
    assert ", ".join(method.choices[name]) in str(info.value)


REQUIRED = [(m, name) for m in METHODS for name in m.required]


@pytest.mark.parametrize(("method", "name"), REQUIRED, ids=[f"{m.rpc}.{n}" for m, n in REQUIRED])
def test_every_required_field_is_refused_when_missing(method: Method, name: str) -> None:
    check_fields(method, _request(method))  # all given: accepted
    request = _request(method)
    request.ClearField(name)
    with pytest.raises(BadRequest) as info:
        check_fields(method, request)
    assert info.value.field == name and "required" in str(info.value)


@pytest.mark.parametrize(("method", "value"), WITH_APPLIES, ids=[f"{m.rpc}.{v}" for m, v in WITH_APPLIES])
def test_a_params_field_is_accepted_exactly_where_the_method_reads_it(method: Method, value: str) -> None:
    assert method.params is not None and method.params_message is not None
    reads = method.applies[value]
    assert check_fields(method, _request(method, method=value))[1] == reads
    for field in method.params_message.DESCRIPTOR.fields:
        request = _request(method, method=value)
        _fill(getattr(request, method.params), field.name)
        if field.name in reads:
            check_fields(method, request)
            continue
        with pytest.raises(BadRequest) as info:
            check_fields(method, request)
        assert info.value.field == f"{method.params}.{field.name}"
        assert f"does not apply to {value}" in str(info.value)


def test_methods_without_applies_read_every_field() -> None:
    for method in METHODS:
        if not method.applies and method.params is not None:
            assert check_fields(method, _request(method))[1] is None, method.rpc
