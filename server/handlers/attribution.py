"""Attribution: Saliency (gradient, gradient x input, SmoothGrad, integrated gradients, guided
backprop, Grad-CAM). Which parameters each method reads is the method table's ``applies``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from interp import rendering
from interp.attribution.saliency import SaliencyParams
from interp.attribution.saliency import saliency as compute_saliency
from interp.errors import InvalidInput
from models.errors import UnknownLayer
from models.loaded import LoadedModel
from protos import interp_pb2 as pb
from server import convert
from server.context import Ctx
from server.errors import BadRequest
from server.handlers.base import flag, handler, input_echo, per_image


def _resolve_saliency(params: SaliencyParams, model: LoadedModel, request: pb.SaliencyRequest) -> SaliencyParams:
    # The rendering's parameters are judged here too, before any model work.
    try:
        rendering.colormap_code(params.colormap)
    except InvalidInput as exc:
        raise BadRequest(str(exc), field="params.colormap") from None
    clip = params.clip_percentile
    if not (math.isfinite(clip) and 0 < clip <= 100):
        raise BadRequest(f"clip_percentile must be in (0, 100], got {clip}", field="params.clip_percentile")
    if request.method == "grad_cam":
        layer = params.layer if params.layer is not None else model.spec.default_gradcam_layer
        if not layer:
            raise BadRequest(f"grad_cam needs params.layer for {model.spec.name}", field="params.layer")
        try:
            params = dataclasses.replace(params, layer=model.resolve_layer(layer))
        except UnknownLayer as exc:
            raise BadRequest(str(exc.args[0]) if exc.args else str(exc), field="params.layer") from None
    return params


BATCHED_SALIENCY = ("gradient", "gradient_x_input")
"""Saliency methods computed in micro-batches: one pass, each image's gradient its own."""


@handler("Saliency", params=SaliencyParams, resolve=_resolve_saliency, batched=True)
def saliency(ctx: Ctx, request: pb.SaliencyRequest, params: SaliencyParams) -> pb.SaliencyResponse:
    samples = {"smoothgrad": params.samples, "integrated_gradients": params.steps}.get(request.method, 1)
    _, height, width = ctx.model.spec.input_shape
    # One forward holds min(batch_size, samples) copies of the input; all of them together x samples.
    ctx.check_work("Saliency", batch=min(params.batch_size, samples), side=max(height, width), steps=1)
    ctx.replicas = min(params.batch_size, samples)
    target = ctx.target_index(request.target)
    include_input = flag(request, "include_input", True)
    pngs = flag(request, "include_pngs", True)
    applies = ctx.applies
    module = ctx.module

    def run(x: torch.Tensor, out: list[pb.SaliencyResponse], should_stop: Callable[[], bool]) -> None:
        # No separate forward for the prediction: saliency resolves an unset target to the
        # predicted class and returns the probabilities from its own (clean-input) forward.
        result = compute_saliency(
            module,
            x,
            None if target is None else torch.full((x.shape[0],), target, dtype=torch.long, device=x.device),
            method=request.method,
            params=params,
            should_stop=should_stop,
        )
        resolved = convert.params_to_proto(result.params, pb.SaliencyParams, only=applies)
        for i, reply in enumerate(out):
            explained = int(result.target[i])
            saliency_map = result.map[i].detach().cpu()
            reply.method = request.method
            reply.target.CopyFrom(ctx.prediction(explained, result.probabilities[i, explained]))
            reply.map.CopyFrom(convert.tensor(saliency_map))
            reply.attribution.CopyFrom(convert.tensor(result.attribution[i]))
            reply.resolved.CopyFrom(resolved)
            if pngs:
                heat = rendering.heatmap(saliency_map, clip_percentile=params.clip_percentile, colormap=params.colormap)
                reply.heatmap_png = rendering.encode_png(heat)
                reply.overlay_png = rendering.encode_png(rendering.overlay(x[i].cpu(), heat))
            if include_input:
                reply.input.CopyFrom(input_echo(x[i], png=pngs))

    # gradient / gradient_x_input: concurrent single-image calls with the same method, parameters,
    # target and answer options share one pass; the others compute alone.
    key = (request.method, params, target, include_input, pngs) if request.method in BATCHED_SALIENCY else None
    return per_image(ctx, request, pb.SaliencyResponse, run, batch_key=key)
