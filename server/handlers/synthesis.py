"""Synthesis: VisualizeFilter (feature visualization), DeepDream and InterpolateFeatures (deep
feature interpolation), all streamed."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from interp import rendering
from interp.synthesis.deepdream import DeepDreamParams, deepdream
from interp.synthesis.deepdream import resolve as resolve_dream
from interp.synthesis.feature_interpolation import (
    DEFAULT_ALPHAS,
    MAX_ALPHA,
    InterpolateFeaturesParams,
    attribute_vector,
    features,
)
from interp.synthesis.feature_interpolation import interpolate_features as compute_interpolation
from interp.synthesis.feature_interpolation import resolve as resolve_interpolation
from interp.synthesis.feature_vis import visualize_filter as compute_visualization
from interp.synthesis.feature_vis_params import FeatureVisParams
from interp.synthesis.feature_vis_params import resolve as resolve_feature_vis
from models.errors import UnknownLayer
from models.loaded import LoadedModel
from protos import interp_pb2 as pb
from server import convert
from server.context import Ctx
from server.errors import BadRequest
from server.handlers.base import Streamed, handler, png_of

# -- iterative methods (streamed) ---------------------------------------------------------------


def _resolve_visualize(
    params: FeatureVisParams, model: LoadedModel, request: pb.VisualizeFilterRequest
) -> FeatureVisParams:
    try:  # a fully connected layer (class logits) takes the naturalness preset by default
        path = model.resolve_layer(request.layer) if request.layer else None
    except UnknownLayer:
        path = None  # the handler refuses it, naming the field
    shape = next((info.output_shape for info in model.layers if info.name == path), None)
    dense = None if shape is None else len(shape) == 1
    return resolve_feature_vis(
        params, in_channels=model.spec.input_shape[0], input_size=model.spec.input_shape[1], dense=dense
    )


@handler("VisualizeFilter", params=FeatureVisParams, resolve=_resolve_visualize)
def visualize_filter(ctx: Ctx, request: pb.VisualizeFilterRequest, params: FeatureVisParams) -> Streamed:
    model = ctx.model
    path = ctx.layer(request.layer, field="layer")
    info = next(i for i in model.layers if i.name == path)
    channels = list(request.channels)
    for i, c in enumerate(channels):
        if not 0 <= c < info.channels:
            raise BadRequest(
                f"channel {c} out of range for {path}: valid 0..{info.channels - 1}", field=f"channels[{i}]"
            )
    in_channels, side = model.spec.input_shape[0], model.spec.input_shape[1]
    batch, size = len(channels) * int(params.restarts or 1), int(params.image_size or side)
    ctx.check_work("VisualizeFilter", batch=batch, side=size, steps=int(params.steps or 1))
    label = ctx.layer_label(request.layer, path)
    logits = info is model.layers[-1] and tuple(info.output_shape) == (len(model.spec.labels),)  # cells: classes
    names = [model.spec.labels[c] if logits else f"{label}:{c}" for c in channels]
    mean_image = None
    if params.start_from_mean:
        mean_image = ctx.services.training_sets.mean_image(model, size)

    stored = None if ctx.services.atlas is None else ctx.services.atlas.lookup(
        model.weights.sha256, path, params, channels
    )  # fmt: skip
    if stored is not None:  # precomputed by interp-atlas: the same images, now
        atlas = SimpleNamespace(images=torch.from_numpy(np.stack([u.image for u in stored])),
                                activations=[u.activation for u in stored], params=params)  # fmt: skip

        def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
            return atlas

    else:
        run = partial(
            compute_visualization, ctx.module, path, channels, in_channels=in_channels, input_size=side,
            params=params, mean_image=mean_image,
        )  # fmt: skip

    def finish(result: Any) -> pb.VisualizeFilterResult:
        images = result.images.detach().cpu()
        return pb.VisualizeFilterResult(
            layer=path,
            channels=channels,
            images=convert.tensor(images),
            pngs=[png_of(image) for image in images],
            grid_png=rendering.encode_png(rendering.image_grid(images, labels=names)),
            activations=[float(a) for a in result.activations],
            resolved=convert.params_to_proto(result.params, pb.VisualizeFilterParams),
            from_atlas=stored is not None,
        )

    return Streamed(run, finish, elements=ctx.elements(batch, size))


def _resolve_dream(params: DeepDreamParams, model: LoadedModel, request: pb.DeepDreamRequest) -> DeepDreamParams:
    return resolve_dream(params, in_channels=model.spec.input_shape[0], input_size=model.spec.input_shape[1])


@handler("DeepDream", params=DeepDreamParams, resolve=_resolve_dream)
def deep_dream(ctx: Ctx, request: pb.DeepDreamRequest, params: DeepDreamParams) -> Streamed:
    layers: dict[str, float] = {}
    for i, item in enumerate(request.layers):
        weight = item.weight if item.HasField("weight") else 1.0
        if not np.isfinite(weight):
            raise BadRequest(f"layer weight must be finite, got {weight}", field=f"layers[{i}].weight")
        layers[ctx.layer(item.layer, field=f"layers[{i}].layer")] = weight
    x = ctx.input(request.image)

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        return deepdream(ctx.module, x, layers, params=params, on_step=on_step, should_stop=should_stop)

    def finish(result: Any) -> pb.DeepDreamResult:
        image = result.image[0].detach().cpu()
        return pb.DeepDreamResult(
            input=ctx.input_message(x),
            image=convert.tensor(image),
            png=png_of(image),
            gains=[
                pb.LayerGain(layer=name, norm_before=result.norms_before[name], norm_after=result.norms_after[name])
                for name in layers
            ],
            resolved=convert.params_to_proto(result.params, pb.DeepDreamParams),
        )

    # the largest octave is the input's size
    return Streamed(run, finish, elements=ctx.elements(1, max(x.shape[-2:])))


def _resolve_interpolate(
    params: InterpolateFeaturesParams, model: LoadedModel, request: pb.InterpolateFeaturesRequest
) -> InterpolateFeaturesParams:
    alphas = list(request.alphas) or list(DEFAULT_ALPHAS)
    for i, alpha in enumerate(alphas):
        if not (np.isfinite(alpha) and abs(alpha) <= MAX_ALPHA):
            raise BadRequest(
                f"alphas must be finite numbers in [-{MAX_ALPHA:g}, {MAX_ALPHA:g}], got {alpha}", field=f"alphas[{i}]"
            )
    return resolve_interpolation(params, num_alphas=len(alphas))


def _interpolate_applies(request: pb.InterpolateFeaturesRequest) -> tuple[str, ...]:
    """seed and set_size only say how class-name sets are drawn."""
    names = tuple(f.name for f in pb.InterpolateFeaturesParams.DESCRIPTOR.fields)
    sets = request.sets if request.WhichOneof("direction") == "sets" else None
    if sets is not None and (sets.positive_class or sets.negative_class):
        return names
    return tuple(name for name in names if name not in ("seed", "set_size"))


@handler(
    "InterpolateFeatures",
    params=InterpolateFeaturesParams,
    resolve=_resolve_interpolate,
    applies=_interpolate_applies,
)
def interpolate_features(
    ctx: Ctx, request: pb.InterpolateFeaturesRequest, params: InterpolateFeaturesParams
) -> Streamed:
    model = ctx.model
    names = list(request.layers) or list(model.spec.default_dfi_layers)
    if not names:
        note = f" ({model.spec.layers_note})" if model.spec.layers_note else ""
        raise BadRequest(f"{model.spec.name} has no default feature layers: name them in layers{note}", field="layers")
    layers = [ctx.layer(name, field=f"layers[{i}]") for i, name in enumerate(names)]
    alphas = list(request.alphas) or list(DEFAULT_ALPHAS)
    mode = request.WhichOneof("direction")
    if mode is None:
        raise BadRequest("give either attribute sets (positive and negative) or a target image", field="direction")
    source = ctx.input(request.source, "source")
    if mode == "target":
        target_image = ctx.input(request.target, "target")
    else:
        sets = request.sets
        set_size, seed = int(params.set_size or 1), int(params.seed or 0)
        positive = ctx.image_set(sets.positive, sets.positive_class, "positive", set_size, seed)
        negative = ctx.image_set(sets.negative, sets.negative_class, "negative", set_size, seed)

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        module = ctx.module
        if mode == "target":
            direction = features(module, target_image, layers) - features(module, source, layers)
        else:
            direction = attribute_vector(module, positive, negative, layers)
        results = compute_interpolation(
            module,
            source,
            layers,
            direction=direction,
            alphas=alphas,
            params=params,
            on_step=on_step,
            should_stop=should_stop,
        )
        # Each alpha's prediction is a forward too: computed here, inside the capacity slot.
        images = torch.cat([item.images[:1].detach() for item in results])
        with torch.no_grad():
            probs = torch.softmax(module(images), dim=1)
        return results, images, probs

    def finish(outcome: Any) -> pb.InterpolateFeaturesResult:
        results, images, probs = outcome
        out = []
        for item, image, prob in zip(results, images, probs, strict=True):
            best = int(prob.argmax())
            pixels = image.cpu()
            out.append(
                pb.AlphaResult(
                    alpha=float(item.alpha),
                    image=convert.tensor(pixels),
                    png=png_of(pixels),
                    feature_error=float(item.feature_error[0]),
                    prediction=ctx.prediction(best, prob[best]),
                )
            )
        return pb.InterpolateFeaturesResult(
            input=ctx.input_message(source),
            layers=layers,
            results=out,
            resolved=convert.params_to_proto(params, pb.InterpolateFeaturesParams, only=ctx.applies),
            alphas=alphas,
        )

    return Streamed(run, finish)
