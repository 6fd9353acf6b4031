"""The lab's further views of an uploaded image: its nearest dataset images in a layer, and
DeepDream of a layer streamed with the service's previews."""

from __future__ import annotations

import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from client.results import DreamResult
from web.api.lab import digest_of, model_of, note
from web.api.layers import on_indexed_dataset
from web.errors import WebError, json_body, query_int, typed_params
from web.explorer import Explorer, explorer_of, json_endpoint
from web.pngs import data_url
from web.streaming import Events, event_stream, relay

DREAM_PARAMS: dict[str, type] = {"octaves": int, "iterations": int, "step_size": float, "seed": int}


def _neighbors(explorer: Explorer, request: Request) -> dict[str, Any]:
    digest, model = digest_of(request), model_of(request)
    layer = request.query_params.get("layer") or ""
    if not layer:
        raise WebError("INVALID_ARGUMENT", "choose a layer (layer=NAME)", field="layer")
    k = query_int(request, "k", 8, low=1, high=64)
    data = explorer.upload(digest)
    result, notice = on_indexed_dataset(
        explorer, model, lambda dataset: explorer.client.nearest_neighbors(data, model=model, dataset=dataset,
                                                                           layer=layer, k=k)  # fmt: skip
    )
    if result is None:
        return {"notice": notice, "neighbors": [], "python": ""}
    kwargs = {"model": model, "dataset": result.dataset, "layer": result.layer, "k": k, "metric": result.metric}
    return {
        "notice": "",
        "dataset": result.dataset,
        "metric": result.metric,
        "neighbors": [{"image_id": n.image_id, "label": n.label_name, "distance": n.distance, "png": data_url(n.png)}
                      for n in result.neighbors],  # fmt: skip
        "python": explorer.code("nearest_neighbors", ("image.png",), kwargs, image_note=note(digest)),
    }


neighbors = json_endpoint(_neighbors)


def dream_events(explorer: Explorer, digest: str, model: str, layer: str, params: dict[str, Any],
                 stop: threading.Event) -> Events:  # fmt: skip
    """DeepDream progress with previews, then ``{"type": "result", png, gains, python}``."""
    data = explorer.upload(digest)
    found: list[DreamResult] = []
    stream = explorer.client.iter_dream(data, model=model, layers={layer: 1.0}, **params)
    yield from relay(stream, stop, found, previews=True)
    if not found:
        return  # the page went away: the call is cancelled
    result = found[0]
    kwargs = {"model": model, "layers": {layer: 1.0}, **result.params}
    yield {
        "type": "result",
        "png": data_url(result.png),
        "gains": [{"layer": g.layer, "ratio": g.ratio} for g in result.gains],
        "params": result.params,
        "python": explorer.code("dream", ("image.png",), kwargs, image_note=note(digest)),
    }


async def dream(request: Request) -> StreamingResponse:
    """POST ``{"model", "layer", "params": {octaves, iterations, step_size, seed}}`` -> a DeepDream stream."""
    explorer = explorer_of(request)
    digest = digest_of(request)
    body = await json_body(request)
    if not body.get("model") or not body.get("layer"):
        raise WebError("INVALID_ARGUMENT", "name the model and the layer to dream with", field="layer")
    params = typed_params(body.get("params") or {}, DREAM_PARAMS)
    model, layer = str(body["model"]), str(body["layer"])
    return event_stream(lambda stop: dream_events(explorer, digest, model, layer, params, stop))
