"""Result dataclasses returned by :class:`client.InterpClient`: numpy arrays and PNG bytes.

Every result of a computation carries the stamp of the model that produced it (``model``,
``pretrained``, ``weights_sha256``, ``request_id``, ``elapsed_ms`` server-side milliseconds,
``model_source``: "builtin" or a ``--model``'s kind) and,
where the method has parameters, ``params``: every parameter the server actually used, defaults
and seed included, so that the call can be reproduced. Arrays are decoded from the wire's raw
little-endian tensors; image arrays (inputs, adversarial, dreamed, visualized and interpolated
images) are channels last, (H, W, C) float32 in [0, 1], so any of them can be passed back as the
image of another call. PNGs are the server's bytes, ready to write. Results that hold images have
``save(dest)``: a folder receives one file per image, a file path the main image and the others
beside it as ``<stem>_<name>.png`` (see :func:`client.results.base.is_folder`).

Each class declares its fields and any behaviour it adds; it is filled from its reply message by
one generic walk over the descriptors (:mod:`client.results._build`). :data:`RESULTS` maps every
RPC of the method table to the function that turns its reply into what the SDK returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from client.results._build import build, result_class
from client.results.base import Result, beside, file_part, is_folder, save_pngs
from client.results.datasets import (
    ChannelTop,
    EmbeddingResult,
    IndexBuild,
    Neighbor,
    NeighborsResult,
    PlacedImage,
    PlacementResult,
    TopActivationsResult,
    TopEntry,
)
from client.results.generated import generated
from client.results.iterative import (
    AlphaResult,
    AtlasLayer,
    AttackDatasetResult,
    DreamResult,
    FilterVisualization,
    InterpolationResult,
    LayerGain,
    MethodCurve,
    PrecomputedResult,
    ProgressEvent,
    StoredRobustness,
)
from client.results.models import (
    DatasetInfo,
    LayerInfo,
    ModelDescription,
    ModelInfo,
    Prediction,
    Preprocessing,
    ReceptiveField,
    ServerInfo,
    WeightsInfo,
)
from client.results.single import (
    ActivationsResult,
    AttackOutcome,
    AttackResult,
    ClassifyResult,
    KernelsResult,
    LayerActivation,
    MinimalAttackResult,
    SaliencyResult,
)
from protos import interp_pb2 as pb
from protos.methods import METHODS, Method

__all__ = [
    "RESULTS",
    "ITEM_RESULTS",
    "Result",
    "converter",
    "file_part",
    "beside",
    "is_folder",
    "save_pngs",
    "WeightsInfo",
    "ModelInfo",
    "ReceptiveField",
    "LayerInfo",
    "Preprocessing",
    "ModelDescription",
    "Prediction",
    "ServerInfo",
    "ClassifyResult",
    "LayerActivation",
    "ActivationsResult",
    "KernelsResult",
    "SaliencyResult",
    "AttackOutcome",
    "AttackResult",
    "ProgressEvent",
    "FilterVisualization",
    "LayerGain",
    "DreamResult",
    "AlphaResult",
    "InterpolationResult",
    "MinimalAttackResult",
    "MethodCurve",
    "AttackDatasetResult",
    "AtlasLayer",
    "StoredRobustness",
    "PrecomputedResult",
    "DatasetInfo",
    "IndexBuild",
    "TopEntry",
    "ChannelTop",
    "TopActivationsResult",
    "Neighbor",
    "NeighborsResult",
    "EmbeddingResult",
    "PlacedImage",
    "PlacementResult",
]


def converter(method: Method) -> Callable[[Any], Any]:
    """What the SDK returns for a reply of ``method``: its result class, or for a reply that is one
    repeated message field (ListModels, ListDatasets) a list of that field's result class. A reply
    without a registered class gets one made from its descriptor (:mod:`client.results.generated`)."""
    cls = result_class(method.reply)
    only = method.reply.DESCRIPTOR.fields
    if cls is None and len(only) == 1 and only[0].is_repeated and only[0].message_type is not None:
        item, name = generated(only[0].message_type), only[0].name
        return lambda m: [build(item, v) for v in getattr(m, name)]
    return build_as(cls or generated(method.reply.DESCRIPTOR))


def build_as(cls: type) -> Callable[[Any], Any]:
    return lambda m: build(cls, m)


#: The converter of each RPC's reply (see :func:`converter`), used by the SDK.
RESULTS: dict[str, Callable[[Any], Any]] = {method.rpc: converter(method) for method in METHODS}

#: For a many-image RPC, what builds the results of many answers at once (``from_items``), used by
#: the SDK; the others of the many-image RPCs build each answer with RESULTS and the call's stamp.
ITEM_RESULTS: dict[str, Callable[[Sequence[Any], pb.ModelStamp], list[Any]]] = {
    "Classify": ClassifyResult.from_items,
}
