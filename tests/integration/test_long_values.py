"""Every string a request carries, at 1 MB with NUL and newline bytes, gets the server's own status.

Derived from the method table: for each RPC, each string field of its request (nested ones too)
is set alone to a 1 MB value on a request that is otherwise valid, and sent through the raw stub.
The answer must be a status the server chose (INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION:
never a transport error such as RESOURCE_EXHAUSTED from an oversized status), with a message under
1 KB, and every log line the server wrote for it under 2 KB. A new RPC gets this test for free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from protos import interp_pb2_grpc
from protos.methods import METHODS, Method
from server.app import create_server
from tests.conftest import require_fashion_mnist
from tests.support.servers import test_config

LONG = "a\x00b\n" + "x" * (1 << 20) + "\n\x00z"
SERVER_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
PNG = cv2.imencode(".png", np.full((28, 28), 128, np.uint8))[1].tobytes()

# An otherwise valid request: values for the fields a method needs before it reads the one under test.
BASE: dict[str, Any] = {
    "model": "lenet",
    "dataset": "fashion-mnist-test",
    "layer": "relu1",
    "channels": [0],
    "epsilons": [0.01],
    "methods": ["fgsm"],
    "k": 2,
    "limit": 8,
}


def _string_paths(descriptor: Descriptor, prefix: str = "", depth: int = 0) -> list[str]:
    paths = []
    for f in descriptor.fields:
        name = prefix + f.name
        if f.type == FieldDescriptor.TYPE_STRING:
            paths.append(name)
        elif f.type == FieldDescriptor.TYPE_MESSAGE and depth < 3 and f.message_type.name != "Image":
            paths.extend(_string_paths(f.message_type, name + ".", depth + 1))
    return paths


CASES = [(m, path) for m in METHODS for path in _string_paths(m.request.DESCRIPTOR)]


def _base(method: Method) -> Message:
    request = method.request()
    fields = request.DESCRIPTOR.fields_by_name
    for name, value in BASE.items():
        if name in fields and name not in ("layer",) or (name == "layer" and name in fields):
            field = fields[name]
            if field.is_repeated:
                if field.type == FieldDescriptor.TYPE_STRING or field.message_type is None:
                    getattr(request, name).extend(value if isinstance(value, list) else [value])
            elif field.message_type is None:
                setattr(request, name, value if not isinstance(value, list) else value[0])
    if "image" in fields:
        request.image.encoded = PNG
    if "images" in fields:
        request.images.add(encoded=PNG)
    if "layers" in fields:
        layers = request.layers
        if fields["layers"].message_type is None:
            layers.append("relu1")
        else:
            layers.add(layer="relu1")
    for name, choices in method.choices.items():
        field = fields[name]
        if field.is_repeated:
            del getattr(request, name)[:]
            getattr(request, name).append(choices[0])
        else:
            setattr(request, name, choices[0])
    return request


def _set(request: Message, path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    target: Any = request
    for name in parents:
        field = target.DESCRIPTOR.fields_by_name[name]
        child = getattr(target, name)
        if field.is_repeated:
            child = child[0] if len(child) else child.add()
        target = child
    field = target.DESCRIPTOR.fields_by_name[leaf]
    if field.is_repeated:
        del getattr(target, leaf)[:]
        getattr(target, leaf).append(value)
    else:
        if field.containing_oneof is not None:
            target.ClearField(field.containing_oneof.name)
        setattr(target, leaf, value)


@pytest.fixture(scope="module")
def stub() -> Iterator[Any]:
    require_fashion_mnist()
    srv, port = create_server(test_config(models=("lenet",)))
    srv.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield interp_pb2_grpc.InterpStub(channel)
    srv.stop(grace=None)


def test_every_string_field_of_every_request_is_covered() -> None:
    covered = {m.rpc for m, _ in CASES}
    with_strings = {m.rpc for m in METHODS if _string_paths(m.request.DESCRIPTOR)}
    assert covered == with_strings and len(CASES) >= 40


@pytest.mark.parametrize(("method", "path"), CASES, ids=[f"{m.rpc}.{p}" for m, p in CASES])
def test_a_1mb_value_gets_a_short_status_from_the_server(
    stub: Any, method: Method, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = _base(method)
    _set(request, path, LONG)
    call = getattr(stub, method.rpc)
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.RpcError) as info:
        answer = call(iter([request]) if method.request_streamed else request, timeout=120)
        if method.streamed or method.live:
            for _ in answer:
                pass
    error = info.value
    assert error.code() in SERVER_CODES, f"{error.code()}: {error.details()[:300]}"
    assert len(error.details().encode()) < 1024, error.details()[:300]
    assert "\x00" not in error.details() and "\n" not in error.details()
    long_lines = [r.getMessage()[:200] for r in caplog.records if len(r.getMessage()) >= 2048]
    assert not long_lines, long_lines
