"""Errors as the pages show them: JSON ``{code, message, field}`` with a fitting HTTP status.

A failed SDK call keeps the service's status name, message and the field at fault; errors found
by the web layer itself (a bad query, an upload too large) use the same shape, so a page has one
way to show any failure and never leaves a blank area.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse

from client.errors import InterpError

N = TypeVar("N", int, float)

# gRPC status name -> HTTP status. The web process's own credentials failing is the gateway's
# problem (502), not the browser's (401/403 would send it to a login it cannot fix).
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNAUTHENTICATED": 502,
    "PERMISSION_DENIED": 502,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class WebError(Exception):
    """An error the web layer finds itself: a status name, a message and the query field at fault."""

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status if status is not None else HTTP_STATUS.get(code, 500)


def error_body(exc: BaseException) -> dict[str, Any]:
    """``{code, message, field}`` for an SDK error or a :class:`WebError`; anything else: INTERNAL."""
    if isinstance(exc, InterpError):
        message = exc.message
        if exc.code_name == "UNAVAILABLE" and "failed to connect" in message.lower():
            message += " — is interp-server running there? interp-web --server HOST:PORT (or INTERP_SERVER) names it"
        return {"code": exc.code_name, "message": message, "field": exc.field}
    if isinstance(exc, WebError):
        return {"code": exc.code, "message": exc.message, "field": exc.field}
    return {"code": "INTERNAL", "message": f"{type(exc).__name__}: {exc}", "field": None}


def error_response(exc: BaseException) -> JSONResponse:
    body = error_body(exc)
    status = exc.status if isinstance(exc, WebError) else HTTP_STATUS.get(body["code"], 500)
    return JSONResponse(body, status_code=status)


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette exception handler for InterpError and WebError."""
    return error_response(exc)


UNBOUNDED = 1 << 30
"""The default upper bound of :func:`query_int`: no bound a user needs to hear of."""


def query_int(request: Request, name: str, default: int, *, low: int = 0, high: int = UNBOUNDED) -> int:
    """An integer query parameter in [low, high]; INVALID_ARGUMENT naming it otherwise."""
    return _query_number(request, name, default, int, "an integer", low, high)


def query_float(request: Request, name: str, default: float, *, low: float, high: float) -> float:
    """A float query parameter in [low, high]; INVALID_ARGUMENT naming it otherwise."""
    return _query_number(request, name, default, float, "a number", low, high)


def _query_number(request: Request, name: str, default: N, kind: Callable[[str], N], what: str, low: N, high: N) -> N:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise WebError("INVALID_ARGUMENT", f"{name} must be {what}, got {raw!r}", field=name) from None
    if not low <= value <= high:
        bounds = f"at least {low}" if high == UNBOUNDED else f"in [{low}, {high}]"
        raise WebError("INVALID_ARGUMENT", f"{name} must be {bounds}, got {value}", field=name)
    return value


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; INVALID_ARGUMENT otherwise."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise WebError("INVALID_ARGUMENT", "the body must be a JSON object", field="body")
    return body


def typed_params(raw: Any, kinds: dict[str, type]) -> dict[str, Any]:
    """Method parameters from a page, checked by name and type (the service checks their ranges).

    Empty values are left out, so the service's defaults apply (and are echoed back resolved).
    """
    if not isinstance(raw, dict):
        raise WebError("INVALID_ARGUMENT", "params must be an object", field="params")
    params: dict[str, Any] = {}
    for name, value in raw.items():
        kind = kinds.get(name)
        if kind is None:
            known = ", ".join(kinds)
            raise WebError("INVALID_ARGUMENT", f"unknown parameter {name!r}; known: {known}", field=f"params.{name}")
        if value is None or value == "":
            continue
        try:
            params[name] = kind(value)
        except (TypeError, ValueError):
            message = f"{name} must be {kind.__name__}, got {value!r}"
            raise WebError("INVALID_ARGUMENT", message, field=f"params.{name}") from None
    return params
