"""Proto <-> Python conversions used by the servicer: tensors, parameter dataclasses, model info."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from google.protobuf.message import Message

from models.catalogue import LayerInfo
from models.errors import shown
from models.loaded import LoadedModel
from protos import interp_pb2 as pb
from protos.codec import to_tensor

M = TypeVar("M", bound=Message)

__all__ = ["tensor", "params_to_proto", "model_info", "layer", "preprocessing", "shown"]


def tensor(value: torch.Tensor | np.ndarray) -> pb.Tensor:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype).numpy()
    return to_tensor(value)


def params_to_proto(params: Any, message_cls: type[M], *, only: Sequence[str] | None = None) -> M:
    """The resolved dataclass echoed back as the proto Params message (shared field names).

    ``only``: the fields the method actually used (others are left unset, not echoed).
    """
    message = message_cls()
    for field in message_cls.DESCRIPTOR.fields:
        if only is not None and field.name not in only:
            continue
        if hasattr(params, field.name):
            value = getattr(params, field.name)
            if value is not None:
                setattr(message, field.name, value)
    return message


def weights_info(model: LoadedModel) -> pb.WeightsInfo:
    w = model.weights
    return pb.WeightsInfo(source=w.source, path=w.path, sha256=w.sha256, canonical_name=w.canonical_name)


def model_info(model: LoadedModel) -> pb.ModelInfo:
    spec = model.spec
    return pb.ModelInfo(
        name=spec.name,
        task=spec.task,
        input_shape=list(spec.input_shape),
        num_classes=spec.num_classes,
        pretrained=model.pretrained,
        weights=weights_info(model),
        status=model.status,  # "READY", "LOADING" or "UNAVAILABLE": the enum value of that name
        reason=model.reason,
        description=spec.description,
        dataset=spec.dataset,
        source=spec.source,
        class_sets=spec.training_dataset is not None,
    )


def layer(info: LayerInfo) -> pb.Layer:
    message = pb.Layer(
        name=info.name,
        aliases=list(info.aliases),
        type=info.type,
        output_shape=list(info.output_shape),
        channels=info.channels,
        parameters=info.parameters,
        has_kernels=info.has_kernels,
        receptive_field_unknown=not info.rf_known,
    )
    if info.rf_size is not None:
        message.receptive_field.CopyFrom(pb.ReceptiveField(size=info.rf_size, jump=info.rf_jump, start=info.rf_start))
    return message


def preprocessing(model: LoadedModel) -> pb.Preprocessing:
    p = model.spec.preprocessing
    return pb.Preprocessing(
        channels=p.channels,
        resize_shorter=p.resize_shorter,
        crop=p.crop,
        mean=list(p.mean),
        std=list(p.std),
        convention=p.convention,
    )
