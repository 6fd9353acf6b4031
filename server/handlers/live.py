"""Live view: Watch, a layer's activation maps for each frame of a bidirectional stream.

The stream's shared path (one capacity slot, latest frame wins, stall watch, idle timeout) is
``InterpServicer.live``; this module is the session: the settings the messages set (layer, unit,
top_k, float16), checked as they arrive, and the answer to one frame. A frame is computed with
the settings in force when it arrived. With ``top_k`` 0 the forward stops at the layer (the
truncated walk of Activations); otherwise it runs to the logits with the layer recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from interp.hooks import capture, run_until
from protos import interp_pb2 as pb
from protos.codec import fill_tensor
from server.context import Ctx
from server.errors import BadRequest, item_error
from server.handlers.base import handler

DEFAULT_TOP_K = 5
_SETTINGS = ("layer", "unit", "top_k", "float16")  # a message with none of them (nor model) only brings a frame


@dataclass(frozen=True)
class Settings:
    layer: str  # resolved module path
    unit: int  # -1: none
    top_k: int
    float16: bool


@dataclass(frozen=True)
class Item:
    sequence: int  # -1: a settings-only message
    settings: Settings
    frame: pb.Image | None = None
    error: pb.ItemError | None = None


class WatchSession:
    """The settings of one Watch stream and the answers to its frames (see :class:`server.handlers.Live`)."""

    def __init__(self, ctx: Ctx, first: pb.WatchRequest) -> None:
        self.ctx = ctx
        if not first.HasField("layer"):
            raise BadRequest("the first Watch message must name the layer", field="layer")
        # The first message's settings are the stream's: a bad one ends the stream at once.
        self.settings = self._merge(Settings("", -1, DEFAULT_TOP_K, False), first)
        self.frames = 0

    def _merge(self, current: Settings, message: pb.WatchRequest) -> Settings:
        ctx = self.ctx
        if message.model and message.model != ctx.model.spec.name:
            raise BadRequest(
                f"a Watch stream keeps its model ({ctx.model.spec.name}); open another stream for {message.model}",
                field="model",
            )
        settings = current
        if message.HasField("layer"):
            # A new layer drops the unit unless the same message selects one.
            settings = replace(settings, layer=ctx.layer(message.layer, field="layer"), unit=-1)
        if message.HasField("unit"):
            settings = replace(settings, unit=message.unit)
        if message.HasField("top_k"):
            settings = replace(settings, top_k=message.top_k)
        if message.HasField("float16"):
            settings = replace(settings, float16=message.float16)
        classes = ctx.model.spec.num_classes
        if not 0 <= settings.top_k <= classes:
            raise BadRequest(f"top_k must be in 0..{classes}, got {settings.top_k}", field="top_k")
        channels = ctx.layer_info(settings.layer).output_shape[0]
        if not -1 <= settings.unit < channels:
            raise BadRequest(
                f"unit must be in 0..{channels - 1} for layer {settings.layer} (or -1: none), got {settings.unit}",
                field="unit",
            )
        return settings

    def accept(self, message: pb.WatchRequest) -> tuple[Item, bool] | None:
        has_frame = message.HasField("frame")
        sequence = -1
        if has_frame:
            sequence, self.frames = self.frames, self.frames + 1
        try:
            if any(message.HasField(name) for name in _SETTINGS) or message.model:
                self.settings = self._merge(self.settings, message)
        except BadRequest as exc:
            code = exc.grpc_status_code
            error = pb.ItemError(code=code.value[0], code_name=code.name, message=str(exc), field=exc.field or "")
            return Item(sequence, self.settings, error=error), False  # always answered, never replaced
        if not has_frame:
            return None
        return Item(sequence, self.settings, frame=message.frame), True

    def answer(self, item: Item, skipped: int) -> pb.WatchResponse:
        started = time.perf_counter()
        settings = item.settings
        reply = pb.WatchResponse(sequence=item.sequence, skipped=skipped, layer=settings.layer, unit=settings.unit)
        if item.error is not None:
            reply.error.CopyFrom(item.error)
        elif item.frame is not None:
            try:
                self._compute(item.frame, settings, reply)
            except Exception as exc:  # noqa: BLE001 - a frame's own problem ends only its answer
                known = item_error(exc)
                if known is None:
                    raise
                code, message = known
                for name in ("maps", "unit_map", "predictions"):
                    reply.ClearField(name)
                reply.error.CopyFrom(
                    pb.ItemError(code=code.value[0], code_name=code.name, message=message, field="frame")
                )
        reply.compute_ms = (time.perf_counter() - started) * 1000.0
        return reply

    def _compute(self, frame: pb.Image, settings: Settings, reply: pb.WatchResponse) -> None:
        ctx = self.ctx
        x = ctx.input(frame, what="frame")
        module = ctx.module
        with torch.inference_mode():
            if settings.top_k == 0:
                act = run_until(module, x, [settings.layer])[settings.layer]
            else:
                with capture(module, [settings.layer], stop=False) as store:
                    logits = module(x)
                act = store[settings.layer]
                values, indices = torch.softmax(logits.float(), dim=1)[0].topk(settings.top_k)
                reply.predictions.extend(
                    ctx.prediction(i, p) for i, p in zip(indices.tolist(), values.tolist(), strict=True)
                )
        sample = act[0].detach().float().cpu()
        if settings.unit >= 0:
            fill_tensor(
                reply.unit_map,
                (sample[settings.unit].reshape(-1) if sample.dim() == 1 else sample[settings.unit]).numpy(),
            )
        # Written into the answer (no copy of the maps message). The layer's output is this frame's
        # own unless it is the model's memory, so quantization may use it as its working array
        # (the unit map is already copied out): one 4-byte-per-value array fewer per frame.
        own = sample.untyped_storage().data_ptr() not in ctx.model.memory
        quantize(sample.numpy(), settings.float16, out=reply.maps, scratch=own)


def quantize(
    values: np.ndarray, float16: bool = False, *, out: pb.QuantizedMaps | None = None, scratch: bool = False
) -> pb.QuantizedMaps:
    """(C, ...) float32 maps -> 8 bits per channel, ``value = offset[c] + scale[c] * q``
    (rounded: within half a step of the value), or float16. A (F,) vector is one channel.

    ``out``: the message to fill (e.g. a field of the answer) instead of a new one. ``scratch``:
    ``values`` may be overwritten (one float pass fewer to allocate)."""
    maps = pb.QuantizedMaps() if out is None else out
    maps.shape.extend(values.shape)
    maps.float16 = float16
    if float16:
        maps.dtype = pb.Tensor.FLOAT32
        maps.data = np.ascontiguousarray(values, dtype="<f2").tobytes()
        return maps
    flat = values.reshape(values.shape[0], -1) if values.ndim > 1 else values.reshape(1, -1)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scale = np.where(span > 0, span / 255.0, 1.0).astype(np.float32)
    # (flat - low) / scale lies in [0, 255] up to float error, so (flat - low + scale / 2) / scale
    # truncated is the nearest step without a clip: one subtraction, then one multiplication
    # written straight into the 8-bit result (each pass over AlexNet's relu1 costs ~0.05 ms).
    work = np.subtract(flat, low - scale * np.float32(0.5), out=flat if scratch else None)
    q = np.empty(flat.shape, np.uint8)
    np.multiply(work, np.float32(1.0) / scale, out=q, casting="unsafe")
    maps.dtype = pb.Tensor.UINT8
    maps.data = q.tobytes()
    maps.scale.extend(scale[:, 0].tolist())
    maps.offset.extend(low[:, 0].tolist())
    return maps


@handler("Watch")
def watch(ctx: Ctx, request: pb.WatchRequest, params: None) -> WatchSession:
    return WatchSession(ctx, request)
