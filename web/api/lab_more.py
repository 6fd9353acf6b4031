"""The lab's further views of an uploaded image: its nearest dataset images in a layer, DeepDream
of a layer and deep feature interpolation towards a class, both streamed with the service's previews."""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse

from client.results import DreamResult, InterpolationResult
from client.streams import EventStream
from web.api.lab import digest_of, model_of, note, prediction_json
from web.api.layers import on_indexed_dataset
from web.errors import WebError, json_body, query_int, typed_params
from web.explorer import Explorer, explorer_of, json_endpoint
from web.pngs import data_url
from web.streaming import Events, event_stream, relay

R = TypeVar("R")
DREAM_PARAMS: dict[str, type] = {"octaves": int, "iterations": int, "step_size": float, "seed": int}
DFI_PARAMS: dict[str, type] = {"iterations": int, "warm_iterations": int, "tv_weight": float, "seed": int,
                               "set_size": int}  # fmt: skip


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


def streamed_result(stream: EventStream[R], stop: threading.Event) -> Generator[dict[str, Any], None, R | None]:
    """The stream's progress events with previews (``yield from``), then its result; None when the
    page went away (the call is cancelled)."""
    found: list[R] = []
    yield from relay(stream, stop, found, previews=True)
    return found[0] if found else None


def dream_events(explorer: Explorer, digest: str, model: str, layer: str, params: dict[str, Any],
                 stop: threading.Event) -> Events:  # fmt: skip
    """DeepDream progress with previews, then ``{"type": "result", png, gains, python}``."""
    stream = explorer.client.iter_dream(explorer.upload(digest), model=model, layers={layer: 1.0}, **params)
    result: DreamResult | None = yield from streamed_result(stream, stop)
    if result is None:
        return
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


def interpolate_events(explorer: Explorer, digest: str, values: dict[str, Any], stop: threading.Event) -> Events:
    """Deep feature interpolation's progress with previews, then each alpha's image and prediction."""
    stream = explorer.client.iter_interpolate(explorer.upload(digest), **values)
    result: InterpolationResult | None = yield from streamed_result(stream, stop)
    if result is None:
        return
    kwargs = {**values, "layers": list(result.layers), "alphas": list(result.alphas), **result.params}
    yield {
        "type": "result",
        "alphas": [{"alpha": a.alpha, "png": data_url(a.png), "prediction": prediction_json(a.prediction),
                    "feature_error": a.feature_error} for a in result.results],  # fmt: skip
        "layers": list(result.layers),
        "params": result.params,
        "python": explorer.code("interpolate", ("image.png",), kwargs, image_note=note(digest)),
    }


async def interpolate(request: Request) -> StreamingResponse:
    """POST ``{"model", "positive", "negative", "params"}`` (class names: towards ``positive``, away
    from ``negative``) -> an InterpolateFeatures stream."""
    explorer = explorer_of(request)
    digest = digest_of(request)
    body = await json_body(request)
    names = [body.get(name) for name in ("model", "positive", "negative")]
    if not all(isinstance(n, str) and n for n in names):
        raise WebError("INVALID_ARGUMENT", "name the model and the two classes to move between", field="positive")
    values = dict(zip(("model", "positive", "negative"), names, strict=True))
    values |= typed_params(body.get("params") or {}, DFI_PARAMS)
    return event_stream(lambda stop: interpolate_events(explorer, digest, values, stop))
