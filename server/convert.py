"""Proto <-> Python conversions used by the servicer: tensors, parameter dataclasses, model info."""

from __future__ import annotations

import dataclasses
import math
from typing import TypeVar

import numpy as np
import torch

from models.catalogue import LayerInfo
from models.hub import LoadedModel
from protos import interp_pb2 as pb
from protos.codec import to_tensor
from server.errors import BadRequest

P = TypeVar("P")


def tensor(value: torch.Tensor | np.ndarray) -> pb.Tensor:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype).numpy()
    return to_tensor(value)


def params_from_proto(message, cls: type[P], **overrides) -> P:
    """Dataclass of a method's parameters from a proto Params message: only fields that are set.

    Unset optional fields stay at the dataclass default (None = "the model's default"), so the
    defaults live in one place: the method's own dataclass. Non-finite floats are refused here.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for field, value in message.ListFields():
        if field.name in names:
            if isinstance(value, float) and not math.isfinite(value):
                raise BadRequest(f"parameter {field.name} must be a finite number, got {value}")
            kwargs[field.name] = value
    kwargs.update(overrides)
    return cls(**kwargs)


def params_to_proto(params, message_cls):
    """The resolved dataclass echoed back as the proto Params message (shared field names)."""
    message = message_cls()
    for field in message_cls.DESCRIPTOR.fields:
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
        status=pb.ModelInfo.READY if model.status == "READY" else pb.ModelInfo.UNAVAILABLE,
        reason=model.reason,
        description=spec.description,
        dataset=spec.dataset,
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
