"""JSON of the image lab (``/lab``): uploads kept under their sha256, then classes, activation maps,
saliency and an adversarial example for the image the page's URL names."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from client.results import (
    ActivationsResult,
    AttackResult,
    ClassifyResult,
    LayerInfo,
    MinimalAttackResult,
    Prediction,
    SaliencyResult,
)
from web.errors import WebError, query_float, query_int
from web.explorer import Explorer, explorer_of, json_endpoint
from web.pngs import data_url, encode_png, normalized

R = TypeVar("R")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAPS_PER_LAYER = 32  # the most active channels of each layer shown (ranked by the service)


def digest_of(request: Request) -> str:
    digest = request.path_params["digest"]
    if not DIGEST.match(digest):
        message = "image must be the sha256 the upload returned (64 hex digits)"
        raise WebError("INVALID_ARGUMENT", message, field="image")
    return digest


def model_of(request: Request) -> str:
    model = request.query_params.get("model", "")
    if not model:
        raise WebError("INVALID_ARGUMENT", "choose a model (model=NAME)", field="model")
    return model


def single(result: object, kind: type[R]) -> R:
    """The one result of a one-image SDK call (the SDK's many-image form returns a list)."""
    if not isinstance(result, kind):
        raise WebError("INTERNAL", f"expected one {kind.__name__}, got {type(result).__name__}")
    return result


def prediction_json(p: Prediction | None) -> dict[str, Any] | None:
    return None if p is None else {"index": p.index, "label": p.label, "probability": p.probability}


def note(digest: str) -> str:
    return f"the image uploaded to the lab (sha256 {digest[:16]}…): 'download PNG' under the input"


async def upload(request: Request) -> JSONResponse:
    """POST the image's bytes as the body (no file name, no path); returns its sha256."""
    explorer = explorer_of(request)
    cap = explorer.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise WebError("RESOURCE_EXHAUSTED", f"the image is {int(declared)} bytes; the explorer takes at most {cap}",
                       field="image", status=413)  # fmt: skip
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise WebError("RESOURCE_EXHAUSTED", f"the image is over {cap} bytes, the explorer's upload cap",
                           field="image", status=413)  # fmt: skip
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise WebError("INVALID_ARGUMENT", "the upload is empty", field="image")
    digest = hashlib.sha256(data).hexdigest()
    explorer.uploads.put(digest, data)
    return JSONResponse({"image": digest, "bytes": size})


async def image(request: Request) -> Response:
    """The uploaded bytes back (the page's input and its 'download')."""
    data = explorer_of(request).upload(digest_of(request))
    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg" if data.startswith(b"\xff\xd8") else None
    return Response(data, media_type=kind or "application/octet-stream", headers={"Cache-Control": "private"})


def _maps(result: ActivationsResult) -> list[dict[str, Any]]:
    layers = []
    for layer in result.layers:
        activation = layer.activation
        if activation is None or activation.ndim != 3:
            continue
        # the most active channels first (as the service's own top_k ranks them), at most MAPS_PER_LAYER
        shown = [int(c) for c in np.argsort(-activation.mean(axis=(1, 2)), kind="stable")[:MAPS_PER_LAYER]]
        scale = normalized(activation[shown])  # one scale per layer: maps of a layer compare
        maps = [{"unit": ch, "png": data_url(encode_png(scale[i]))} for i, ch in enumerate(shown)]
        layers.append({"layer": layer.layer, "channels": int(activation.shape[0]), "maps": maps})
    return layers


LAB_LAYERS = 32  # the most layers the lab maps (the service takes 64 per Activations call by default)


def lab_layers(layers: Sequence[LayerInfo]) -> list[str]:
    """The spatial layers the lab maps: all of them (after the input normalization), or for a deep
    model (a ResNet lists each block's convolutions, norms, activations and the block itself)
    its convolutions and pools, evenly thinned to LAB_LAYERS, the last always kept."""
    spatial = [layer for layer in layers if len(layer.output_shape) == 3 and layer.type != "Normalize"]
    if len(spatial) > LAB_LAYERS:
        spatial = [layer for layer in spatial if layer.has_kernels or "Pool" in layer.type] or spatial
    if len(spatial) > LAB_LAYERS:
        step = len(spatial) / LAB_LAYERS
        spatial = [spatial[len(spatial) - 1 - int(i * step)] for i in reversed(range(LAB_LAYERS))]
    return [layer.name for layer in spatial]


def _analysis(explorer: Explorer, request: Request) -> dict[str, Any]:
    digest, model = digest_of(request), model_of(request)
    data = explorer.upload(digest)
    top_k = query_int(request, "top_k", 5, low=1, high=1000)
    classified = single(explorer.client.classify(data, model=model, top_k=top_k, include_input=True), ClassifyResult)
    description = explorer.client.describe_model(model)
    spatial = lab_layers(description.layers)
    activations = single(
        explorer.client.activations(data, model=model, layers=spatial, include_pngs=False, include_input=False),
        ActivationsResult,
    )
    return {
        "image": digest,
        "model": description.model.name,
        "labels": list(description.labels),
        "input": data_url(classified.input_png),
        "predictions": [prediction_json(p) for p in classified.predictions],
        "layers": _maps(activations),
        "python": explorer.code("classify", ("image.png",), {"model": model, "top_k": top_k}, image_note=note(digest)),
        "python_activations": explorer.code(
            "activations", ("image.png",), {"model": model, "layers": spatial},
            image_note=note(digest),
        ),  # fmt: skip
    }


analysis = json_endpoint(_analysis)


def _saliency(explorer: Explorer, request: Request) -> dict[str, Any]:
    digest, model = digest_of(request), model_of(request)
    method = request.query_params.get("method") or "gradient"
    result = single(explorer.client.saliency(explorer.upload(digest), model=model, method=method), SaliencyResult)
    kwargs = {"model": model, "method": method, "target": result.target.index if result.target else None,
              **result.params}  # fmt: skip
    return {
        "method": result.method,
        "target": prediction_json(result.target),
        "overlay": data_url(result.overlay_png),
        "heatmap": data_url(result.heatmap_png),
        "params": result.params,
        "python": explorer.code("saliency", ("image.png",), kwargs, image_note=note(digest)),
    }


saliency = json_endpoint(_saliency)


def _adversarial(
    explorer: Explorer, request: Request, default: str, sdk_name: str, kind: type[R], **values: Any
) -> tuple[R, dict[str, Any]]:
    """One attack call of the SDK on the image (``method`` from the query, else ``default``): the
    result and what its answers share (method, original prediction, parameters, snippet)."""
    digest, model = digest_of(request), model_of(request)
    method = request.query_params.get("method") or default
    call = getattr(explorer.client, sdk_name)
    result: Any = single(call(explorer.upload(digest), model=model, method=method, **values), kind)
    kwargs = {"model": model, "method": method, **values, **result.params}
    return result, {
        "method": result.method,
        "original": prediction_json(result.original),
        "params": result.params,
        "python": explorer.code(sdk_name, ("image.png",), kwargs, image_note=note(digest)),
    }


def _adversarial_json(outcome: Any, **fields: Any) -> dict[str, Any]:
    """``fields`` and the adversarial image of an attack outcome or a closest failure, with its prediction."""
    image = {"adversarial": prediction_json(outcome.prediction), "adversarial_png": data_url(outcome.adversarial_png)}
    return fields | image


def _attack(explorer: Explorer, request: Request) -> dict[str, Any]:
    epsilon = query_float(request, "eps", 0.05, low=1e-6, high=1.0)
    result, shared = _adversarial(explorer, request, "fgsm", "attack", AttackResult, epsilon=epsilon)
    outcome = result.outcomes[0]
    extra = {"success": outcome.success, "linf": outcome.linf, "perturbation_png": data_url(outcome.perturbation_png)}
    return shared | _adversarial_json(outcome, epsilon=outcome.epsilon, **extra)


attack = json_endpoint(_attack)


def _closest_failure(explorer: Explorer, request: Request) -> dict[str, Any]:
    """MinimalAttack: the smallest 8-bit L-inf epsilon at which the model fails on the image."""
    result, shared = _adversarial(explorer, request, "pgd", "minimal_attack", MinimalAttackResult)
    return shared | _adversarial_json(result, found=result.found, epsilon=result.epsilon, level=result.level)


closest_failure = json_endpoint(_closest_failure)


def _unit_map(explorer: Explorer, request: Request) -> dict[str, Any]:
    """One unit's activation map on the image (the unit page, when the lab holds an image)."""
    digest, model = digest_of(request), model_of(request)
    layer = request.query_params.get("layer") or ""
    unit = query_int(request, "unit", 0)
    answer = explorer.client.activations(explorer.upload(digest), model=model, layers=[layer], include_input=True)
    result = single(answer, ActivationsResult)
    activation = result.layers[0].activation
    if activation is None or activation.ndim != 3 or unit >= activation.shape[0]:
        raise WebError("INVALID_ARGUMENT", f"{layer} has no spatial map for unit {unit}", field="unit")
    channel = activation[unit]
    return {
        "input": data_url(result.input_png),
        "map": data_url(encode_png(normalized(channel))),
        "max": float(channel.max()),
        "mean": float(channel.mean()),
        "python": explorer.code("activations", ("image.png",), {"model": model, "layers": [layer]},
                                image_note=note(digest)),  # fmt: skip
    }


unit_map = json_endpoint(_unit_map)
