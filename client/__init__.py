"""Python SDK and `interp` CLI for the cnn-interp gRPC service (grpc, protobuf, numpy; never torch).

from client import InterpClient
with InterpClient("localhost:50051") as c:
    print(c.classify("cat.png", model="vgg16").top)
"""

from client import errors
from client.errors import InterpError
from client.images import ImageLike, image_message
from client.results import (
    ActivationsResult,
    AlphaResult,
    AttackDatasetResult,
    AttackOutcome,
    AttackResult,
    ClassifyResult,
    DreamResult,
    FilterVisualization,
    InterpolationResult,
    KernelsResult,
    LayerActivation,
    LayerGain,
    LayerInfo,
    MethodCurve,
    MinimalAttackResult,
    ModelDescription,
    ModelInfo,
    Prediction,
    Preprocessing,
    ProgressEvent,
    ReceptiveField,
    SaliencyResult,
    ServerInfo,
    WeightsInfo,
)
from client.sdk import DEFAULT_TARGET, EventStream, InterpClient

__all__ = [
    "DEFAULT_TARGET",
    "ActivationsResult",
    "AlphaResult",
    "AttackDatasetResult",
    "AttackOutcome",
    "AttackResult",
    "ClassifyResult",
    "DreamResult",
    "EventStream",
    "FilterVisualization",
    "ImageLike",
    "InterpClient",
    "InterpError",
    "InterpolationResult",
    "KernelsResult",
    "LayerActivation",
    "LayerGain",
    "LayerInfo",
    "MethodCurve",
    "MinimalAttackResult",
    "ModelDescription",
    "ModelInfo",
    "Prediction",
    "Preprocessing",
    "ProgressEvent",
    "ReceptiveField",
    "SaliencyResult",
    "ServerInfo",
    "WeightsInfo",
    "errors",
    "image_message",
]
