"""Jobs a page starts on the service and watches: index builds (BuildIndex), streamed and cancellable.

The page reads the events; closing the stream (the page's "cancel", or leaving the page)
cancels the SDK call, and the service stops at its next step.
"""

from __future__ import annotations

import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from client.results import IndexBuild
from web.errors import WebError, json_body
from web.explorer import Explorer, explorer_of
from web.streaming import Events, event_stream, relay


def index_events(explorer: Explorer, model: str, dataset: str, layer: str, stop: threading.Event) -> Events:
    """BuildIndex progress, then ``{"type": "result", images, seconds, reused, python}``."""
    found: list[IndexBuild] = []
    yield from relay(explorer.client.iter_build_index(model, dataset, layers=[layer]), stop, found)
    if not found:
        return  # the page went away: the call is cancelled
    result = found[0]
    params: dict[str, Any] = {"layers": [layer], **result.params}
    yield {
        "type": "result",
        "images": result.images,
        "seconds": result.seconds,
        "reused": result.reused,
        "python": explorer.code("build_index", (model, dataset), params),
    }


async def build_index(request: Request) -> StreamingResponse:
    """POST ``{"dataset": NAME}`` -> a stream of the index build of this layer on that dataset."""
    explorer = explorer_of(request)
    model, layer = request.path_params["model"], request.path_params["layer"]
    dataset = (await json_body(request)).get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise WebError("INVALID_ARGUMENT", "name the dataset to index (a served dataset's name)", field="dataset")
    return event_stream(lambda stop: index_events(explorer, model, dataset, layer, stop))
