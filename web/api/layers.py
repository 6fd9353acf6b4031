"""JSON of a layer's page (units, paged, Microscope style) and the feature visualizations it streams.

A page's missing visualizations are computed in ONE VisualizeFilter call (the channels batched)
and kept in the explorer's cache under (weights sha256, layer, unit, parameters), so a second
visit, or the unit page after the layer page, is instant. When the server holds an atlas of the
layer (``interp-atlas``, ListPrecomputed lists it), a page whose query sets no visualization
parameter takes the atlas's (its steps, seed and image size; its batch as the page size), so the
first visit is instant too: the page's units are one stored batch and the call is answered from it
(``from_atlas`` in the result event); the unit page asks for its unit's whole stored batch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from starlette.requests import Request
from starlette.responses import StreamingResponse

from client.errors import FailedPrecondition, InterpError
from client.results import FilterVisualization, LayerInfo, ModelDescription, TopActivationsResult
from web.api.models import layer_json
from web.errors import WebError, json_body, query_int, typed_params
from web.explorer import Explorer, explorer_of, json_endpoint
from web.pngs import data_url, encode_png, normalized
from web.streaming import Events, event_stream, relay

R = TypeVar("R")

# Visualization parameters a page may set (its query holds them), with their types.
VISUAL_PARAMS: dict[str, type] = {
    "steps": int,
    "seed": int,
    "image_size": int,
    "restarts": int,
    "preset": str,
    "parameterization": str,
    "objective": str,
}
MAX_PER_PAGE = 64  # the service's default max_channels per VisualizeFilter call


def visual_params(raw: Any) -> dict[str, Any]:
    """The page's visualization parameters, checked by name and type (the service checks ranges)."""
    return typed_params(raw, VISUAL_PARAMS)


def page_channels(layer: LayerInfo, page: int, per_page: int) -> list[int]:
    start = page * per_page
    if layer.channels and start >= layer.channels:
        last = (layer.channels - 1) // per_page
        raise WebError(
            "OUT_OF_RANGE",
            f"page {page} is past the last page, {last} ({layer.channels} units, {per_page} a page, from page 0)",
            field="page",
        )
    return list(range(start, min(start + per_page, layer.channels)))


def fitting_datasets(explorer: Explorer, model: str) -> list[str]:
    """Served datasets whose images fit ``model``'s input (the ones an index can be built on), smallest first."""
    fitting = [d for d in explorer.client.list_datasets() if model.lower() in (m.lower() for m in d.fits_models)]
    return [d.name for d in sorted(fitting, key=lambda d: d.size)]


def on_indexed_dataset(explorer: Explorer, model: str, query: Callable[[str], R]) -> tuple[R | None, str]:
    """``query(dataset)`` on the first served dataset (smallest first) with a fitting index, or a notice why none.

    The notice names what to do: BuildIndex (and its CLI form) when a dataset fits the model, the
    server's ``--dataset NAME=DIR`` when none does.
    """
    fitting = fitting_datasets(explorer, model)
    if not fitting:
        return None, (
            f"no served dataset fits {model}'s input, so there are no dataset examples: an operator adds "
            "an image folder with interp-server --dataset NAME=DIR (or INTERP_DATASETS)"
        )
    notice = ""
    for dataset in fitting:
        try:
            return query(dataset), ""
        except FailedPrecondition as exc:
            notice = notice or exc.message
    return None, notice or "no index of this layer: build one with BuildIndex"


def top_crops(
    explorer: Explorer, model: str, layer: str, channels: list[int], k: int, projections: bool
) -> tuple[TopActivationsResult | None, str]:
    """The top-k crops from the first served dataset with an index of ``layer``, or a notice why none."""
    return on_indexed_dataset(
        explorer,
        model,
        lambda dataset: explorer.client.top_activations(
            model, dataset=dataset, layer=layer, channels=channels, k=k, entry_pngs=True, projections=projections
        ),
    )


def entry_json(entry: Any, projection_png: bytes = b"") -> dict[str, Any]:
    return {
        "image_id": entry.image_id,
        "label": entry.label_name,
        "value": entry.value,
        "box": list(entry.box),
        "crop": data_url(entry.crop_png),
        "image": data_url(entry.image_png),
        "projection": data_url(projection_png),
    }


def first_layer_kernels(
    explorer: Explorer, model: str, description: ModelDescription, layer: LayerInfo
) -> tuple[np.ndarray, str] | None:
    """The (O, C, kH, kW) kernels of the model's first layer with kernels (the one the model page
    shows) when they read the image's 1 or 3 channels, and the Kernels call that returns them; None
    for any other layer (no call made), or when Kernels cannot answer (the page goes on without)."""
    if not layer.has_kernels:
        return None
    if layer.name != next((entry.name for entry in description.layers if entry.has_kernels), None):
        return None
    channels = description.model.input_shape[0]
    try:
        weights = explorer.client.kernels(model, layer.name).weights
    except InterpError:
        return None
    if weights is None or weights.ndim != 4 or weights.shape[1] != channels or channels not in (1, 3):
        return None
    return weights, explorer.code("kernels", (model, layer.name), {})


def kernel_json(kernels: tuple[np.ndarray, str] | None, unit: int) -> dict[str, Any] | None:
    """One unit's kernel as an image: the pixels it weighs (grey 0, brighter positive, darker
    negative; a colour kernel's channels on one scale), enlarged nearest-neighbour to about 160 px."""
    if kernels is None:
        return None
    weights, python = kernels
    kernel = np.moveaxis(weights[unit], 0, -1)  # (kH, kW, C)
    scale = float(np.abs(kernel).max()) or 1.0
    pixels = 0.5 + 0.5 * kernel / scale
    zoom = max(1, 160 // max(kernel.shape[:2]))
    pixels = np.repeat(np.repeat(pixels, zoom, axis=0), zoom, axis=1)
    return {"png": data_url(encode_png(pixels)), "shape": list(weights.shape[1:]), "python": python}


def _layer_of(explorer: Explorer, model: str, name: str) -> LayerInfo:
    return _described(explorer, model, name)[1]


def _described(explorer: Explorer, model: str, name: str) -> tuple[ModelDescription, LayerInfo]:
    """The model's description and its layer ``name`` (NOT_FOUND naming the valid ones)."""
    description = explorer.client.describe_model(model)
    try:
        return description, description.layer(name)
    except KeyError as exc:
        raise WebError("NOT_FOUND", str(exc.args[0]), field="layer") from None


# The visualization parameters interp-atlas sets (--steps, --seed, --image-size); the others are the
# layer's defaults, so these reproduce its resolved parameters in a VisualizeFilter call.
ATLAS_JOB_PARAMS = ("steps", "seed", "image_size")


def layer_atlas(explorer: Explorer, model: str, layer: str) -> Any | None:
    """The stored atlas of ``layer`` with the most units (ListPrecomputed), or None."""
    stored = explorer.client.list_precomputed(model, layer=layer).atlas
    return max(stored, key=lambda a: a.units) if stored else None


def atlas_json(atlas: Any, channels: list[int], params: dict[str, Any], *, unit_page: bool = False) -> dict[str, Any]:
    """What a page says about the atlas: the job's parameters, the stored batch holding ``channels[0]``
    (the unit page asks for it whole), and whether the page's call is answered from the atlas:
    ``channels`` (the unit page: its unit's batch) is a stored batch and ``params`` are the job's."""
    batches = [list(b.channels) for b in atlas.batches]
    batch = next((b for b in batches if channels and channels[0] in b), [])
    job = {name: atlas.params[name] for name in ATLAS_JOB_PARAMS if name in atlas.params}
    same = all(name in job and job[name] == value for name, value in params.items())
    stored = bool(batch) if unit_page else channels in batches
    return {"params": atlas.params, "job": job | {"batch": atlas.batch}, "dataset": atlas.dataset,
            "units": atlas.units, "serves": same and stored, "batch_channels": batch}  # fmt: skip


def page_params(request: Request, atlas: Any | None) -> dict[str, Any]:
    """The query's visualization parameters, or the atlas's job parameters when the query sets none."""
    params = visual_params({k: v for k, v in request.query_params.items() if k in VISUAL_PARAMS})
    if params or atlas is None:
        return params
    return {name: atlas.params[name] for name in ATLAS_JOB_PARAMS if name in atlas.params}


def cached_visual(explorer: Explorer, sha: str, layer: str, unit: int, params: dict[str, Any]) -> dict[str, Any] | None:
    hit = explorer.visuals.get((sha, layer, unit, json.dumps(params, sort_keys=True)))
    return None if hit is None else {"png": data_url(hit[0]), "params": hit[1]}


def unit_labels(description: Any, layer: LayerInfo) -> tuple[str, ...]:
    """The class names of a logits layer's units (the model's last layer, one unit per class), else ()."""
    layers, labels = description.layers, tuple(description.labels)
    last = layers[-1].name if layers else ""
    return labels if layer.name == last and layer.channels == len(labels) else ()


def index_dataset(explorer: Explorer, model: str, notice: str) -> str:
    """The dataset a page's "build the index" button indexes (the smallest that fits), when the
    page says an index is missing; "" otherwise."""
    return (fitting_datasets(explorer, model)[:1] or [""])[0] if notice else ""


def _units(explorer: Explorer, request: Request) -> dict[str, Any]:
    model, name = request.path_params["model"], request.path_params["layer"]
    description, layer = _described(explorer, model, name)
    atlas = layer_atlas(explorer, model, layer.name)
    default = atlas.batch if atlas is not None and 1 <= atlas.batch <= MAX_PER_PAGE else 16
    per_page = query_int(request, "per_page", default, low=1, high=MAX_PER_PAGE)
    page = query_int(request, "page", 0)
    channels = page_channels(layer, page, per_page)
    params = page_params(request, atlas)
    sha = explorer.weights_sha256(model)
    tops, notice = top_crops(explorer, model, layer.name, channels, 1, False) if channels else (None, "")
    best = {top.channel: top.entries[0] for top in tops.channels if top.entries} if tops else {}
    kernels = first_layer_kernels(explorer, model, description, layer)
    labels = unit_labels(description, layer)
    units = [
        {
            "unit": ch,
            "label": labels[ch] if labels else "",
            "visual": cached_visual(explorer, sha, layer.name, ch, params),
            "top": entry_json(best[ch]) if ch in best else None,
            # the dataset's largest value is 0: a rectified unit that never fires (exactly 0 elsewhere: never)
            "silent": ch in best and best[ch].value == 0,
            "kernel": kernel_json(kernels, ch),
        }
        for ch in channels
    ]
    pages = max(1, -(-layer.channels // per_page))
    return {"layer": layer_json(layer), "page": page, "pages": pages, "per_page": per_page, "units": units,
            "dataset": tops.dataset if tops else "", "notice": notice, "params": params,
            "index_dataset": index_dataset(explorer, model, notice),
            "atlas": atlas_json(atlas, channels, params) if atlas is not None else None}  # fmt: skip


units = json_endpoint(_units)


def _unit(explorer: Explorer, request: Request) -> dict[str, Any]:
    model, name = request.path_params["model"], request.path_params["layer"]
    description, layer = _described(explorer, model, name)
    text = request.path_params["unit"]
    unit = int(text) if text.isdecimal() else -1  # "-1", "abc": no unit of any layer
    if not 0 <= unit < max(layer.channels, 1):
        raise WebError("OUT_OF_RANGE", f"{layer.name} has units 0..{layer.channels - 1}, not {text}", field="unit")
    atlas = layer_atlas(explorer, model, layer.name)
    params = page_params(request, atlas)
    k = query_int(request, "k", 9, low=1, high=64)
    tops, notice = top_crops(explorer, model, layer.name, [unit], k, True)
    entries: list[dict[str, Any]] = []
    python = ""
    if tops is not None:
        for entry in tops.channels[0].entries if tops.channels else ():
            projection = encode_png(normalized(entry.projection)) if entry.projection is not None else b""
            entries.append(entry_json(entry, projection))
        kwargs = {"dataset": tops.dataset, "layer": layer.name, "channels": [unit], "k": k, "entry_pngs": True,
                  "projections": True}  # fmt: skip
        python = explorer.code("top_activations", (model,), kwargs)
    sha = explorer.weights_sha256(model)
    stored = atlas_json(atlas, [unit], params, unit_page=True) if atlas is not None else None
    kernel = kernel_json(first_layer_kernels(explorer, model, description, layer), unit)
    labels = unit_labels(description, layer)
    return {"layer": layer_json(layer), "unit": unit, "label": labels[unit] if labels else "",
            "visual": cached_visual(explorer, sha, layer.name, unit, params),
            "top": entries, "notice": notice, "dataset": tops.dataset if tops else "", "python": python,
            "tied": bool(tops and tops.channels and tops.channels[0].tied),
            "index_dataset": index_dataset(explorer, model, notice),
            "params": params, "atlas": stored, "kernel": kernel}  # fmt: skip


unit = json_endpoint(_unit)


def visualize_events(
    explorer: Explorer, model: str, layer: str, channels: list[int], params: dict[str, Any], stop: threading.Event
) -> Events:
    """Progress events (with the service's previews), then ``{"type": "result", units: {unit: png}}``."""
    sha = explorer.weights_sha256(model)
    key = json.dumps(params, sort_keys=True)
    found = {ch: explorer.visuals.get((sha, layer, ch, key)) for ch in channels}
    missing = [ch for ch, hit in found.items() if hit is None]
    from_atlas = False
    if missing:
        done: list[FilterVisualization] = []
        stream = explorer.client.iter_visualize_filter(model, layer, missing, **params)
        yield from relay(stream, stop, done, previews=True)
        if not done:
            return  # the page went away: the call is cancelled
        result = done[0]
        from_atlas = result.from_atlas
        for ch, png in zip(result.channels, result.pngs, strict=True):
            found[ch] = (png, result.params)
            explorer.visuals.put((sha, layer, ch, key), (png, result.params))
    resolved = next(hit[1] for hit in found.values() if hit is not None)
    units = {str(ch): data_url(hit[0]) for ch, hit in found.items() if hit is not None}
    python = explorer.code("visualize_filter", (model, layer, channels), resolved)
    yield {"type": "result", "units": units, "params": resolved, "computed": missing, "python": python,
           "from_atlas": from_atlas}  # fmt: skip


async def visualize(request: Request) -> StreamingResponse:
    """POST ``{"channels": [...], "params": {...}}`` -> a stream of progress events, then the images."""
    explorer = explorer_of(request)
    model, layer = request.path_params["model"], request.path_params["layer"]
    body = await json_body(request)
    channels = body.get("channels")
    if not isinstance(channels, list) or not channels or not all(isinstance(c, int) and c >= 0 for c in channels):
        raise WebError("INVALID_ARGUMENT", "channels must be a non-empty list of unit indices", field="channels")
    if len(channels) > MAX_PER_PAGE:
        raise WebError("INVALID_ARGUMENT", f"at most {MAX_PER_PAGE} channels per call", field="channels")
    params = visual_params(body.get("params", {}))
    return event_stream(lambda stop: visualize_events(explorer, model, layer, channels, params, stop))
