"""Exceptions that carry their gRPC status, and the one decorator that maps them for every RPC.

An exception class says its status with a ``grpc_status_code`` class attribute (google
api-core's way); :func:`status_for` walks the exception's class hierarchy (its MRO) and takes the
first class that declares one, so a subclass inherits its parent's status or overrides it.
Exceptions defined where ``grpc`` is not imported (``interp/``, ``models/``, ``protos/``) get
theirs from :func:`register_status`, called for them by :mod:`server.foreign_errors`. This
module imports nothing of the project.

Expected errors carry their message to the client unchanged (it names the valid choices);
anything else is INTERNAL with a request id, logged here with its stack trace, never sent.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger("interp.server")


class BadRequest(ValueError):
    """A request the servicer rejects before any model work (missing field, over a limit).

    ``field``: the offending request field's path (``params.samples``, ``layers[2]``), sent to the
    client as a ``google.rpc.BadRequest`` field violation.
    """

    grpc_status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Overloaded(RuntimeError):
    """The server is at capacity for heavy work (queue full), or an answer is above a budget."""

    grpc_status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(RuntimeError):
    """The request is well formed but the server's state does not allow it yet (build an index
    first, make the map first)."""

    grpc_status_code = grpc.StatusCode.FAILED_PRECONDITION


_REGISTERED: dict[type[BaseException], grpc.StatusCode] = {}


def register_status(kind: type[BaseException], code: grpc.StatusCode) -> None:
    """The status of an exception class that cannot carry ``grpc_status_code`` itself (it is
    defined in a package that does not import grpc)."""
    _REGISTERED[kind] = code


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status of ``exc``: the first class of its MRO that declares or registered one; None: INTERNAL."""
    for kind in type(exc).__mro__:
        code = kind.__dict__.get("grpc_status_code") or _REGISTERED.get(kind)
        if code is not None:
            return code
    return None


def new_request_id() -> str:
    """12 random hex digits."""
    return os.urandom(6).hex()


MESSAGE_LIMIT = 1200
"""UTF-8 bytes of an error message that reach a status or a log line; a longer one is elided in the
middle. Request values are shown shortened where messages are made (``models.errors.shown``); this
bound holds for every message, whatever made it, so a status never outgrows gRPC's 8 KB metadata
limit: the message travels in grpc-message (non-ASCII bytes percent-encoded: up to 3.6 KB) and,
base64-encoded, in the rich status, twice when it names a field (3.2 KB)."""
_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if c != 10}  # newlines kept: a list of fixes reads as one


def _message(exc: BaseException) -> str:
    # KeyError-derived exceptions repr their argument; use the plain text.
    return bounded(str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else str(exc))


def bounded(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` with control characters escaped but newlines, at most about ``limit`` UTF-8 bytes."""
    message = message.translate(_CONTROL)
    data = message.encode()
    if len(data) <= limit:
        return message
    head = limit * 2 // 3
    first, last = data[:head].decode(errors="ignore"), data[-(limit - head) :].decode(errors="ignore")
    return f"{first} ...[{len(data) - limit:,} bytes elided]... {last}"


def rich_status(code: grpc.StatusCode, message: str, request_id: str, field: str | None = None) -> grpc.Status:
    """A status with ``google.rpc.Status`` details: RequestInfo always, BadRequest when a field is known.

    Any gRPC client reads them from the ``grpc-status-details-bin`` trailer (grpcio-status in
    Python, ``@grpc/grpc-js`` + google-rpc protos elsewhere) instead of parsing the message.
    """
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.RequestInfo(request_id=request_id))
    details.append(info)
    if field is not None:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=message)]
            )
        )
        details.append(bad)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(status)


def one_line(message: str) -> str:
    """``message`` for a log line: its lines joined with " / " (a text log stays one line a record)."""
    return " / ".join(part.strip() for part in message.splitlines() if part.strip())


def _abort(context: grpc.ServicerContext, method: str, request_id: str, exc: BaseException) -> NoReturn:
    code = status_for(exc)
    if code is None:
        log.exception("request %s: %s failed", request_id, method)
        message = f"internal error (request id {request_id}); see the server log"
        context.abort_with_status(rich_status(grpc.StatusCode.INTERNAL, message, request_id))
        raise AssertionError("unreachable: abort_with_status raises")
    message = _message(exc)
    if code == grpc.StatusCode.CANCELLED and context.is_active():
        # Work stops early for two reasons: the client went away (then nobody hears this), or the
        # server's default deadline passed while the client still waits: that is a deadline.
        code = grpc.StatusCode.DEADLINE_EXCEEDED
        message += "; the server's default deadline per RPC passed (set a longer deadline, or --default-deadline)"
    log.info("request %s: %s -> %s: %s", request_id, method, code.name, one_line(message))
    field = getattr(exc, "field", None)
    context.abort_with_status(rich_status(code, f"{message} (request id {request_id})", request_id, field))
    raise AssertionError("unreachable: abort_with_status raises")


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Map exceptions to status codes for a unary or server-streaming servicer method.

    The wrapped method receives ``request_id`` as a keyword argument, to stamp results with.
    """
    name = method.__name__

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: object, request: object, context: grpc.ServicerContext) -> Iterator[object]:
            request_id = new_request_id()
            try:
                yield from method(self, request, context, request_id=request_id)
            except Exception as exc:  # noqa: BLE001 - the one place every error is mapped
                if not context.is_active():
                    log.info("request %s: %s stopped: client gone (%s)", request_id, name, type(exc).__name__)
                    return
                _abort(context, name, request_id, exc)

        return stream

    @functools.wraps(method)
    def unary(self: object, request: object, context: grpc.ServicerContext) -> object:
        request_id = new_request_id()
        try:
            return method(self, request, context, request_id=request_id)
        except Exception as exc:  # noqa: BLE001 - the one place every error is mapped
            _abort(context, name, request_id, exc)

    return unary


#: The codes that end only one image's answer in a many-image call (``images``): what that
#: image alone would have failed with (undecodable, too large, bad pixels). Any other error is
#: the request's own and fails the whole call.
ITEM_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)


def item_error(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The (status, message) of ``exc`` raised while reading one image when it ends only that
    image's answer (see ``ITEM_CODES``); None: the error is the request's own."""
    code = status_for(exc)
    if code is None or code not in ITEM_CODES:
        return None
    return code, _message(exc)
