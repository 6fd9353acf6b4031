"""The SDK's typed methods against the method table; blocking forms derived; request streams."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from client import InterpClient
from client.results import ProgressEvent
from protos import interp_pb2 as pb
from protos.methods import METHODS, by_rpc

#: SDK argument names that are not request fields of the same name (argument -> field).
ALIASES = {
    "epsilon": "epsilons",
    "method": "methods",
    "name": "model",
    "positive": "sets",
    "negative": "sets",
    "frames": "frame",
}
NOT_FIELDS = {"self", "timeout", "progress", "params", "max_in_flight"}  # max_in_flight: the SDK's own window


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.rpc)
def test_each_typed_method_names_request_fields_and_takes_the_required_ones(method) -> None:
    forms = [getattr(InterpClient, method.sdk_name)]
    if method.streamed:
        forms.append(getattr(InterpClient, f"iter_{method.sdk_name}"))
    fields = method.request.DESCRIPTOR.fields_by_name
    for form in forms:
        parameters = inspect.signature(form).parameters
        for name in parameters:
            if name in NOT_FIELDS:
                continue
            field = name if name in fields else ALIASES.get(name, name)
            assert field in fields, f"{form.__qualname__}({name}=) is no field of {method.request.__name__}"
        given = {name if name in fields else ALIASES.get(name, name) for name in parameters}
        for name in method.required:
            assert name in given, f"{form.__qualname__} lacks the required {name}"
        if method.params is not None:
            assert "params" in parameters, f"{form.__qualname__} takes no **params"


@pytest.mark.parametrize("method", [m for m in METHODS if m.streamed], ids=lambda m: m.rpc)
def test_blocking_forms_are_the_iterator_forms_read_to_the_end(method) -> None:
    iterate = getattr(InterpClient, f"iter_{method.sdk_name}")
    block = getattr(InterpClient, method.sdk_name)
    assert block.__wrapped__ is iterate and block.__name__ == method.sdk_name
    assert "progress" in inspect.signature(iterate).parameters
    expected = [p for p in inspect.signature(iterate).parameters.values()]
    assert list(inspect.signature(block).parameters.values()) == expected
    assert "EventStream" not in str(inspect.signature(block).return_annotation)


class _Recorder:
    """A stub whose every RPC records the request argument and answers a one-result stream."""

    def __init__(self) -> None:
        self.requests: list[object] = []

    def __getattr__(self, rpc: str):
        def call(request, timeout=None, metadata=None):
            self.requests = list(request) if not isinstance(request, pb.BuildIndexRequest) else [request]
            progress = pb.BuildIndexEvent(progress=pb.Progress(step=1, total_steps=1))
            return iter([progress, pb.BuildIndexEvent(result=pb.BuildIndexResult(dataset="d"))])

        return call


def test_a_request_stream_sends_one_message_per_value_and_unary_requests_stay_single(monkeypatch) -> None:
    import protos.methods as table

    streamed = dataclasses.replace(by_rpc("BuildIndex"), request_streamed=True)
    monkeypatch.setitem(table._BY_RPC, "BuildIndex", streamed)  # noqa: SLF001 - a table entry the proto has not yet
    with InterpClient("127.0.0.1:1") as c:
        c._stub = _Recorder()  # noqa: SLF001
        seen: list[ProgressEvent] = []
        values = ({"model": "lenet", "dataset": f"d{i}"} for i in range(3))
        result = c.call_stream("BuildIndex", values, params={"k": 4}, progress=seen.append)
        assert next(iter(result)).step == 1 and len(seen) == 1
        assert [r.dataset for r in c._stub.requests] == ["d0", "d1", "d2"]  # noqa: SLF001
        assert all(r.params.k == 4 for r in c._stub.requests)  # noqa: SLF001
        with pytest.raises(TypeError, match="stream"):
            c.call_stream("BuildIndex", {"model": "lenet"})
        monkeypatch.setitem(
            table._BY_RPC, "BuildIndex", by_rpc("BuildIndex").__class__(**{**vars(streamed), "request_streamed": False})
        )  # noqa: SLF001
        assert c.build_index("lenet", "d").dataset == "d"
        assert [r.dataset for r in c._stub.requests] == ["d"]  # noqa: SLF001
