"""Typed exceptions for the SDK: one table maps gRPC status codes back to exception classes.

The server answers every failure with a status code and a message that names what went wrong
(and, for INTERNAL errors, a request id that appears in its log). The SDK raises the matching
subclass of :class:`InterpError`, keeping the server's message intact::

    try:
        client.classify("cat.png", model="vgg16")
    except client.errors.FailedPrecondition as e:   # the model has no weights
        print(e.message)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
    "InterpError",
    "FieldViolation",
    "Cancelled",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "Unauthenticated",
    "from_rpc_error",
    "exception_for",
    "from_item_error",
]

# "request id 3f2a...", "request id: 3f2a", "request_id=3f2a", "request-id 3f2a".
_REQUEST_ID = re.compile(r"request[ _-]id[\s:=]*([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]|[A-Za-z0-9])", re.I)
# Trailing-metadata keys a server may use for the same purpose.
_REQUEST_ID_KEYS = ("request-id", "x-request-id", "interp-request-id")


class InterpError(Exception):
    """Base class of every error the SDK raises for a failed call.

    Attributes:
        code: the gRPC status code, or None for an error detected by the SDK itself.
        message: the server's message (gRPC "details"), unchanged.
        request_id: the server's request id when the message or trailing metadata carries one.
    """

    #: The status code this class stands for (None on the base class).
    status: grpc.StatusCode | None = None

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        request_id: str | None = None,
        field_violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.status
        self.request_id = request_id if request_id is not None else _find_request_id(message)
        #: The request fields the server refused, from ``google.rpc.BadRequest`` details.
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)

    @property
    def field(self) -> str | None:
        """The first offending field's path (e.g. ``"params.samples"``), when the server named one."""
        return self.field_violations[0].field if self.field_violations else None

    @property
    def details(self) -> str:
        """The server's message (gRPC calls it details); same as :attr:`message`."""
        return self.message

    @property
    def code_name(self) -> str:
        """The status code's name, e.g. ``"NOT_FOUND"`` (``"UNKNOWN"`` when there is none)."""
        return self.code.name if self.code is not None else "UNKNOWN"

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"


@dataclass(frozen=True)
class FieldViolation:
    """One refused request field: its path (``params.samples``, ``layers[2]``) and why."""

    field: str
    description: str


class Cancelled(InterpError):
    """The call was cancelled (by this client, or the server gave up on it)."""

    status = grpc.StatusCode.CANCELLED


class InvalidArgument(InterpError, ValueError):
    """A bad image, layer, channel, class, method or parameter; the message names the valid choices."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(InterpError, TimeoutError):
    """The call's deadline (``timeout``) expired before the server finished."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(InterpError, LookupError):
    """No model of that name is served; the message lists the ones that are."""

    status = grpc.StatusCode.NOT_FOUND


class PermissionDenied(InterpError):
    """The caller is known but not allowed to make this call."""

    status = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(InterpError):
    """The server is at capacity (too many heavy calls queued) or a message was too large. Retry later."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(InterpError):
    """The model exists but is UNAVAILABLE (e.g. no weights); the message says how to fix it."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(InterpError, NotImplementedError):
    """The server does not implement this RPC (yet)."""

    status = grpc.StatusCode.UNIMPLEMENTED


class Internal(InterpError):
    """The server failed unexpectedly; quote :attr:`request_id` when reporting it."""

    status = grpc.StatusCode.INTERNAL


class Unavailable(InterpError, ConnectionError):
    """The server cannot be reached (down, wrong address, TLS mismatch) or is shutting down."""

    status = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(InterpError):
    """The server requires a token and none, or a wrong one, was sent."""

    status = grpc.StatusCode.UNAUTHENTICATED


# The one table: status code -> exception class. Codes not listed raise the base InterpError.
_BY_CODE: dict[grpc.StatusCode, type[InterpError]] = {
    cls.status: cls
    for cls in (
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Unimplemented,
        Internal,
        Unavailable,
        Unauthenticated,
    )
    if cls.status is not None
}


def exception_for(code: grpc.StatusCode | None) -> type[InterpError]:
    """The exception class the SDK raises for a status code (:class:`InterpError` if none is specific)."""
    if code is None:
        return InterpError
    return _BY_CODE.get(code, InterpError)


def from_rpc_error(error: grpc.RpcError) -> InterpError:
    """Convert a failed call's ``grpc.RpcError`` into the matching :class:`InterpError` subclass.

    Args:
        error: the exception grpc raised; it is also a ``grpc.Call`` carrying code and details.

    Returns:
        The typed exception (not raised), with the server's message and request id.
    """
    code = _call_attr(error, "code")
    details = _call_attr(error, "details")
    message = details if isinstance(details, str) and details else (str(error) or "call failed")
    request_id, violations = _status_details(error)
    if request_id is None:  # a server without structured details: the message or a metadata key
        request_id = _find_request_id(message) or _metadata_request_id(_call_attr(error, "trailing_metadata"))
    if not isinstance(code, grpc.StatusCode):
        code = None
    return exception_for(code)(message, code=code, request_id=request_id, field_violations=violations)


def _status_details(error: grpc.RpcError) -> tuple[str | None, list[FieldViolation]]:
    """RequestInfo and BadRequest from the call's ``google.rpc.Status`` details (grpcio-status)."""
    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError, TypeError):
        return None, []
    if status is None:
        return None, []
    request_id = None
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            request_id = info.request_id or None
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return request_id, violations


def _call_attr(error: grpc.RpcError, name: str) -> object:
    getter = getattr(error, name, None)
    if not callable(getter):
        return None
    try:
        return getter()
    except Exception:  # a half-formed error object must not mask the failure being reported
        return None


def _find_request_id(message: str) -> str | None:
    match = _REQUEST_ID.search(message or "")
    return match.group(1) if match else None


def _metadata_request_id(metadata: object) -> str | None:
    if not metadata:
        return None
    try:
        for key, value in metadata:  # type: ignore[attr-defined]
            if str(key).lower() in _REQUEST_ID_KEYS:
                return value.decode() if isinstance(value, bytes) else str(value)
    except (TypeError, ValueError):
        return None
    return None


def from_item_error(item: Any, *, field: str | None = None, request_id: str | None = None) -> InterpError:
    """The typed exception (not raised) for one image's ``ItemError`` in a many-image answer.

    Args:
        item: the ``interp.v1.ItemError`` message.
        field: the field path to report (the SDK renumbers ``images[i]`` across its chunks);
            default the server's.
        request_id: the call's request id (the answer's stamp).
    """
    try:
        code: grpc.StatusCode | None = next(c for c in grpc.StatusCode if c.value[0] == item.code)
    except StopIteration:
        code = None
    path = field if field is not None else item.field
    violations = [FieldViolation(path, item.message)] if path else []
    return exception_for(code)(item.message, code=code, request_id=request_id, field_violations=violations)
