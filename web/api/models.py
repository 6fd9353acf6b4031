"""JSON of the models page (``/``) and of one model's layer strip (``/models/{model}``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from client.results import LayerInfo, ModelInfo
from web.explorer import explorer_of
from web.pngs import data_url


def model_json(info: ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "status": info.status,
        "reason": info.reason,
        "pretrained": info.pretrained,
        "description": info.description,
        "dataset": info.dataset,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "source": info.source,  # "builtin", or a --model's kind: torchvision, torchscript, export
        "class_sets": info.class_sets,  # deep feature interpolation between class names works
        "weights": {
            "source": info.weights.source,
            "sha256": info.weights.sha256,
            "file": info.weights.path.rsplit("/", 1)[-1],  # the name only: no server paths on a page
        },
    }


def layer_json(layer: LayerInfo) -> dict[str, Any]:
    rf = layer.receptive_field
    return {
        "name": layer.name,
        "aliases": list(layer.aliases),
        "type": layer.type,
        "output_shape": list(layer.output_shape),
        "channels": layer.channels,
        "receptive_field": None if rf is None else {"size": rf.size, "jump": rf.jump, "start": rf.start},
        "parameters": layer.parameters,
        "has_kernels": layer.has_kernels,
    }


async def list_models(request: Request) -> JSONResponse:
    explorer = explorer_of(request)
    models = await explorer.call(explorer.client.list_models)
    return JSONResponse({"models": [model_json(m) for m in models], "python": explorer.code("list_models")})


async def describe(request: Request) -> JSONResponse:
    """The layer strip, and the first conv layer's trained kernels (CNN Explainer's first stop)."""
    explorer = explorer_of(request)
    model = request.path_params["model"]
    description = await explorer.call(explorer.client.describe_model, model)
    first = next((layer for layer in description.layers if layer.has_kernels), None)
    kernels: dict[str, Any] | None = None
    if first is not None:
        result = await explorer.call(explorer.client.kernels, description.model.name, first.name)
        kernels = {
            "layer": result.layer,
            "shape": list(result.weights.shape) if result.weights is not None else [],
            "png": data_url(result.grid_png),
            "python": explorer.code("kernels", (description.model.name, first.name)),
        }
    body = {
        "model": model_json(description.model),
        "layers": [layer_json(layer) for layer in description.layers],
        "labels": list(description.labels),
        "kernels": kernels,
        "python": explorer.code("describe_model", (description.model.name,)),
    }
    return JSONResponse(body)
