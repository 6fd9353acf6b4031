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
    AttackOutcome,
    AttackResult,
    ChannelTop,
    ClassifyResult,
    DatasetInfo,
    DreamResult,
    FilterVisualization,
    IndexBuild,
    InterpolationResult,
    KernelsResult,
    LayerActivation,
    LayerGain,
    LayerInfo,
    ModelDescription,
    ModelInfo,
    Neighbor,
    NeighborsResult,
    Prediction,
    Preprocessing,
    ProgressEvent,
    ReceptiveField,
    SaliencyResult,
    ServerInfo,
    TopActivationsResult,
    TopEntry,
    WeightsInfo,
)
from client.sdk import DEFAULT_TARGET, EventStream, InterpClient

__all__ = [
    "DEFAULT_TARGET",
    "ActivationsResult",
    "AlphaResult",
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
    "ChannelTop",
    "DatasetInfo",
    "IndexBuild",
    "Neighbor",
    "NeighborsResult",
    "TopActivationsResult",
    "TopEntry",
]
