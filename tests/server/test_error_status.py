"""Exceptions carry their gRPC status; the lookup walks the class's MRO; foreign classes (defined
where grpc is not imported) are registered by the server."""

from __future__ import annotations

import grpc

from interp.errors import Cancelled, InvalidInput
from models.errors import ModelUnavailable, UnknownLayer, UnknownModel, WeightsNotFound
from server import foreign_errors
from server.errors import BadRequest, FailedPrecondition, Overloaded, status_for
from server.stores.index import IndexUnavailable
from server.stores.maps import MapUnavailable


def test_the_servers_exceptions_carry_their_status() -> None:
    assert status_for(BadRequest("x", field="f")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(Overloaded("x")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_for(IndexUnavailable("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(MapUnavailable("x")) == grpc.StatusCode.FAILED_PRECONDITION


def test_a_subclass_inherits_its_parents_status_or_declares_its_own() -> None:
    class Busy(FailedPrecondition):
        pass

    class Gone(FailedPrecondition):
        grpc_status_code = grpc.StatusCode.NOT_FOUND

    assert status_for(Busy()) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(Gone()) == grpc.StatusCode.NOT_FOUND


def test_foreign_exceptions_get_their_registered_status() -> None:
    assert UnknownModel in foreign_errors.FOREIGN_STATUS
    assert status_for(UnknownModel("x")) == grpc.StatusCode.NOT_FOUND
    assert status_for(ModelUnavailable("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(UnknownLayer("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(InvalidInput("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(WeightsNotFound("x")) == grpc.StatusCode.FAILED_PRECONDITION  # a WeightsError
    assert status_for(Cancelled("x")) == grpc.StatusCode.CANCELLED


def test_anything_else_has_no_status_and_becomes_internal() -> None:
    assert status_for(ValueError("x")) is None
    assert status_for(KeyError("x")) is None


def test_every_message_is_bounded_and_logged_on_one_line() -> None:
    from server.errors import MESSAGE_LIMIT, bounded, one_line

    # a status keeps its lines (a list of fixes); other control characters are escaped
    assert bounded("short\nline\x00\r") == "short\nline\\x00\\x0d"
    assert one_line("fix it with one of:\n  - this\n  - that\n") == "fix it with one of: / - this / - that"
    long = "start " + "x" * 10**6 + " end"
    out = bounded(long)
    assert len(out) < MESSAGE_LIMIT + 60 and out.startswith("start xx") and out.endswith("xx end")
    assert "bytes elided" in out
    for wide in ("é" * 5000, "漢" * 5000):  # counted in bytes: grpc's metadata limit is in bytes
        assert len(bounded(wide).encode()) < MESSAGE_LIMIT + 60
