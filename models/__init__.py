"""The model layer: registry, weights resolution, layer catalogue, loaded-model hub.

Importing the package registers the served models (``models.zoo``). Never imports ``interp``.
"""

from models import zoo as _zoo  # noqa: F401  (registers vgg16, alexnet, lenet)
from models.catalogue import LayerInfo, layer_catalogue
from models.hub import ModelHub
from models.loaded import LOADING, READY, UNAVAILABLE, LoadedModel
from models.registry import ModelSpec, Preprocessing, WeightsRecord, get_spec, list_models, register_model
from models.weights import WeightsInfo, WeightsOptions, resolve_weights

__all__ = [
    "LOADING",
    "READY",
    "UNAVAILABLE",
    "LayerInfo",
    "LoadedModel",
    "ModelHub",
    "ModelSpec",
    "Preprocessing",
    "WeightsInfo",
    "WeightsOptions",
    "WeightsRecord",
    "get_spec",
    "layer_catalogue",
    "list_models",
    "register_model",
    "resolve_weights",
]
