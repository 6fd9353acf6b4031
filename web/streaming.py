"""Streamed views as server-sent events: a blocking generator of dicts, one ``data:`` line each.

The generator runs in a worker thread; when the browser goes away the ``stop`` flag it was given
is set, the generator leaves its ``with`` block at its next event, and that cancels the SDK's
stream, so the service stops computing within a step.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from typing import Any, TypeVar

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse

from client.results import ProgressEvent
from client.streams import EventStream
from web.errors import WebError, error_body
from web.pngs import data_url

Events = Iterator[dict[str, Any]]
R = TypeVar("R")


def _guarded(events: Events) -> Events:
    """``events``, then on failure one ``{"type": "error", code, message, field}`` event."""
    try:
        yield from events
    except Exception as exc:  # every failure reaches the page as a readable event
        yield {"type": "error", **error_body(exc)}


def event_stream(start: Callable[[threading.Event], Events]) -> StreamingResponse:
    """A ``text/event-stream`` response of ``start(stop)``'s events."""
    stop = threading.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in iterate_in_threadpool(_guarded(start(stop))):
                yield f"data: {json.dumps(event)}\n\n".encode()
        finally:
            stop.set()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def relay(stream: EventStream[R], stop: threading.Event, into: list[R], *, previews: bool = False) -> Events:
    """The SDK stream's progress as page events (with the service's previews when ``previews``);
    its result is appended to ``into``. When ``stop`` is set it returns early, leaving ``into``
    empty: leaving the ``with`` block cancels the call on the service."""
    with stream:
        for event in stream:
            if stop.is_set():
                return
            if isinstance(event, ProgressEvent):
                progress = {"type": "progress", "step": event.step, "total": event.total_steps, "stage": event.stage,
                            "queued": event.queued_position}  # fmt: skip
                if previews:
                    progress["preview"] = data_url(event.preview_png)
                yield progress
            else:
                into.append(event)
    if not into:
        raise WebError("INTERNAL", "the service's stream ended without a result")


def relayed(stream: EventStream[R], stop: threading.Event) -> Generator[dict[str, Any], None, R | None]:
    """:func:`relay`'s events; returns the call's result, or None when the page went away (the call
    is then cancelled)."""
    found: list[R] = []
    yield from relay(stream, stop, found)
    return found[0] if found else None


def call_kwargs(values: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a "copy as Python" snippet: the page's values but the model (the
    call's first argument) and every parameter the service resolved."""
    return {k: v for k, v in values.items() if k != "model"} | dict(params)
