"""JSON of the robustness page (``/robustness``): accuracy against epsilon over a served dataset,
one curve per method (AttackDataset, streamed and cancellable), and where each image flips; and
beside it the results interp-robustness stored offline for the model (ListPrecomputed)."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from client.results import AttackDatasetResult, MethodCurve
from web.api.embedding import NAME
from web.errors import WebError, json_body
from web.explorer import Explorer, explorer_of, json_endpoint
from web.pngs import data_url
from web.streaming import Events, call_kwargs, event_stream, relayed

FLIPS_LISTED = 100  # image indices listed per curve point


async def datasets(request: Request) -> JSONResponse:
    """The served datasets: name, size, classes and the models whose input they fit."""
    explorer = explorer_of(request)
    found = await explorer.call(explorer.client.list_datasets)
    return JSONResponse({"datasets": [{"name": d.name, "size": d.size, "classes": list(d.classes),
                                       "fits_models": list(d.fits_models)} for d in found]})  # fmt: skip


def flips(curve: MethodCurve, epsilons: tuple[float, ...]) -> list[dict[str, Any]]:
    """Per curve point: the images (dataset positions) whose minimal epsilon lies in (previous, this]."""
    minimal = curve.minimal if curve.minimal is not None else np.zeros(0, np.float32)
    points, low = [], 0.0
    for epsilon in epsilons:
        at = np.flatnonzero((minimal > low) & (minimal <= epsilon + 1e-9))
        points.append({"epsilon": epsilon, "count": int(at.size), "images": [int(i) for i in at[:FLIPS_LISTED]]})
        low = epsilon
    return points


def curve_json(curve: MethodCurve, epsilons: tuple[float, ...]) -> dict[str, Any]:
    minimal = curve.minimal if curve.minimal is not None else np.zeros(0, np.float32)
    finite = minimal[np.isfinite(minimal) & (minimal > 0)]
    counts, edges = np.histogram(finite, bins=12) if finite.size else (np.zeros(0), np.zeros(0))
    median = curve.median_minimal
    return {
        "method": curve.method,
        "accuracy": list(curve.accuracy),
        "median_minimal": median if math.isfinite(median) else None,
        "not_found": curve.not_found,
        "clean_errors": int((minimal == 0).sum()),
        "histogram": {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]},
        "flips": flips(curve, epsilons),
    }


def result_json(explorer: Explorer, result: AttackDatasetResult, values: dict[str, Any]) -> dict[str, Any]:
    """The page's view of an AttackDataset result; ``values``: the call's (for "copy as Python")."""
    return {
        "type": "result",
        "dataset": result.dataset,
        "images": result.images,
        "skipped": result.skipped,
        "clean_accuracy": result.clean_accuracy,
        "epsilons": list(result.epsilons),
        "norm": result.norm,
        "curves": [curve_json(c, result.epsilons) for c in result.curves],
        "curve_png": data_url(result.curve_png),
        "params": result.params,
        "true_labels": result.true_labels,
        "precomputed": result.precomputed,  # stored by interp-robustness, answered at once
        "python": explorer.code("attack_dataset", (values["model"],), call_kwargs(values, result.params)),
    }


def robustness_events(explorer: Explorer, values: dict[str, Any], stop: threading.Event) -> Events:
    result = yield from relayed(explorer.client.iter_attack_dataset(**values), stop)
    if result is not None:  # None: the page went away, the call is cancelled
        yield result_json(explorer, result, values)


def _stored(explorer: Explorer, request: Request) -> dict[str, Any]:
    """The results interp-robustness stored for the model (on the dataset), newest settings first."""
    model, dataset = request.query_params.get("model", ""), request.query_params.get("dataset", "")
    if not NAME.match(model) or (dataset and not NAME.match(dataset)):
        raise WebError("INVALID_ARGUMENT", "choose a model (and a dataset)", field="model")
    out = []
    for stored in explorer.client.list_precomputed(model, dataset=dataset).robustness:
        r = stored.result
        values = {"model": model, "dataset": r.dataset, "method": [c.method for c in r.curves],
                  "epsilons": list(r.epsilons), "limit": stored.limit, "true_labels": r.true_labels}  # fmt: skip
        out.append(result_json(explorer, r, values) | {"limit": stored.limit, "engine": stored.engine})
    return {"results": out}


stored = json_endpoint(_stored)


async def run(request: Request) -> StreamingResponse:
    """POST ``{model, dataset, methods: [...], epsilons: [...], limit}`` -> the AttackDataset stream."""
    explorer = explorer_of(request)
    body = await json_body(request)
    methods, epsilons, limit = body.get("methods"), body.get("epsilons"), body.get("limit")
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise WebError("INVALID_ARGUMENT", "choose one method or more", field="methods")
    if not isinstance(epsilons, list) or not epsilons or not all(isinstance(e, int | float) for e in epsilons):
        raise WebError("INVALID_ARGUMENT", "epsilons must be a list of numbers", field="epsilons")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise WebError("INVALID_ARGUMENT", "limit must be a positive number of images", field="limit")
    values = {"model": str(body.get("model") or ""), "dataset": str(body.get("dataset") or ""), "method": methods,
              "epsilons": [float(e) for e in epsilons], "limit": limit}  # fmt: skip
    return event_stream(lambda stop: robustness_events(explorer, values, stop))
