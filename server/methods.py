"""What stays per RPC: the call into ``interp`` and the conversion of its result.

Everything else a handler needs (model readiness, caps, params resolution with defaults, error
mapping, capacity, stamping, streaming with progress and cancellation) is the shared path in
``server/servicer.py``, driven by the method table (``protos/methods.py``). A handler is
registered with :func:`handler` and receives a :class:`server.servicer.Ctx`, the request and the
resolved parameters (the ``interp`` dataclass, or None for a method without Params). A unary
handler returns the reply message; a streamed one returns :class:`Streamed` (the loop to run on
a worker and the conversion of its result). The shared path fills ``stamp``.
"""

from __future__ import annotations

import dataclasses
import math
import platform
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from interp import rendering
from interp.adversarial import AttackParams
from interp.dataset_index import BuildIndexParams
from interp.deepdream import DeepDreamParams
from interp.embedding import EmbeddingParams
from interp.errors import InvalidInput
from interp.feature_vis import FeatureVisParams
from interp.interpolation import InterpolateFeaturesParams
from interp.minimal import AttackDatasetParams, MinimalAttackParams
from interp.saliency import METHOD_PARAMS as SALIENCY_METHOD_PARAMS
from interp.saliency import SaliencyParams
from models.errors import UnknownLayer, shown
from models.hub import LoadedModel
from protos import interp_pb2 as pb
from server import convert
from server.errors import BadRequest

if TYPE_CHECKING:
    from server.servicer import Ctx

API_VERSION = "interp.v1"
LIBRARIES = ("torch", "torchvision", "captum", "grpcio", "protobuf", "numpy", "opencv-python-headless")

Resolver = Callable[[Any, LoadedModel, Any], Any]


@dataclass(frozen=True)
class Streamed:
    """A streamed handler's work: ``run(on_step, should_stop)`` on a worker, then ``finish(result)``."""

    run: Callable[[Callable[..., None], Callable[[], bool]], object]
    finish: Callable[[Any], Any]
    # The largest activation one step computes, all its images (Ctx.elements): below torch's
    # grain size the loop runs on one torch thread (server.threads); 0: the server's threads.
    elements: int = 0


@dataclass(frozen=True)
class Handler:
    fn: Callable[..., Any]
    params: type | None = None  # the interp dataclass of the Params message
    resolve: Resolver | None = None  # model-dependent defaults: (params, model, request) -> params
    model: str = "ready"  # "ready": the request's model must be READY; "any": served; "none": no model
    # The Params fields this request's method reads (None: all); the others are neither capped
    # by their defaults nor echoed.
    applies: Callable[[Any], Sequence[str]] | None = None
    # The handler computes through ``ctx.batched`` (micro-batching; it holds the capacity slot
    # per batch for heavy methods, so the servicer does not hold one for the whole call).
    batched: bool = False


HANDLERS: dict[str, Handler] = {}


def handler(
    rpc: str,
    *,
    params: type | None = None,
    resolve: Resolver | None = None,
    model: str = "ready",
    applies: Callable[[Any], Sequence[str]] | None = None,
    batched: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if rpc in HANDLERS:
            raise ValueError(f"two handlers for {rpc}")
        HANDLERS[rpc] = Handler(fn, params, resolve, model, applies, batched)
        return fn

    return register


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# -- models and server -----------------------------------------------------------------------


@handler("ListModels", model="none")
def list_models(ctx: Ctx, request: pb.ListModelsRequest, params: None) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(models=[convert.model_info(m) for m in ctx.hub.all()])


@handler("DescribeModel", model="any")
def describe_model(ctx: Ctx, request: pb.DescribeModelRequest, params: None) -> pb.DescribeModelResponse:
    model = ctx.model
    return pb.DescribeModelResponse(
        model=convert.model_info(model),
        layers=[convert.layer(info) for info in model.layers],
        labels=list(model.spec.labels),
        preprocessing=convert.preprocessing(model),
        default_gradcam_layer=model.spec.default_gradcam_layer,
    )


@handler("GetServerInfo", model="none")
def server_info(ctx: Ctx, request: pb.GetServerInfoRequest, params: None) -> pb.ServerInfo:
    from server import __version__

    limits = pb.Limits(**{f.name: getattr(ctx.limits, f.name) for f in pb.Limits.DESCRIPTOR.fields})
    libraries = {name: package_version(name) for name in LIBRARIES}
    libraries["python"] = platform.python_version()
    config = ctx.servicer.config
    return pb.ServerInfo(
        version=__version__,
        api_version=API_VERSION,
        device=config.device,
        limits=limits,
        libraries=libraries,
        models=ctx.hub.names(),
        worker_threads=config.worker_threads,
        auth_required=ctx.servicer.auth_required,
        tls=config.tls_cert is not None,
        implemented_rpcs=[m.name for m in pb.DESCRIPTOR.services_by_name["Interp"].methods],
        running_heavy=ctx.servicer.gate.running,
        queued_heavy=ctx.servicer.gate.waiting,
    )


# -- many images per call ------------------------------------------------------------------------


def _include(request: Any, name: str, default: bool) -> bool:
    """An ``include_*`` request flag, ``default`` when unset."""
    return bool(getattr(request, name)) if request.HasField(name) else default


def _input_echo(x: torch.Tensor, png: bool) -> pb.PreprocessedInput:
    """One preprocessed input (C, H, W) as sent back: the tensor, and its PNG when ``png``."""
    image = x.detach().cpu()
    encoded = rendering.encode_png(rendering.to_uint8_image(image)) if png else b""
    return pb.PreprocessedInput(tensor=convert.tensor(image), png=encoded)


Fill = Callable[[torch.Tensor, list[Any], Callable[[], bool]], None]


def _per_image(ctx: Ctx, request: Any, reply_cls: type[Any], run: Fill, batch_key: Hashable | None = None) -> Any:
    """The single-image form (``image``) or many images (``images``), through the same ``run``.

    ``run(x, out, should_stop)`` takes a (B, C, H, W) batch of preprocessed inputs and fills ``out[i]``, an
    empty reply message, with the answer for image i, computed as if that image had come alone
    (the ``interp`` functions work per image on a batch). The replies are filled where they will
    be sent (a many-image answer's ``items``), not built and copied: for 256 LeNet answers the
    copies cost as much as the forward. Every image gets the input a single call would give it
    (resized to the model's input), so images of different sizes share a batch; runs of raw
    arrays of one dtype and shape are decoded as one stack (:meth:`Ctx.inputs`; 256 LeNet arrays
    in about 1 ms instead of 20 ms). Many images are decoded and computed in chunks of at most
    ``max_batch_pixels`` input pixels, which bounds the memory of one call; an image that cannot
    be read gets an ``ItemError`` in its place and the others go on.

    A single image with a ``batch_key`` (everything but the image its answer depends on) may be
    computed in one micro-batch with concurrent calls of the same key (:meth:`Ctx.batched`); a
    many-image call is its own batch.
    """
    images = request.images
    if not images:
        x = ctx.input(request.image)

        def compute(xb: torch.Tensor, extras: Sequence[Any], should_stop: Callable[[], bool]) -> list[Any]:
            out = [reply_cls() for _ in extras]
            run(xb, out, should_stop)
            return out

        return ctx.batched(batch_key, x, None, compute)
    if request.HasField("image"):
        raise BadRequest("give image (one) or images (several), not both", field="images")
    with ctx.own_slot():
        return _many(ctx, images, reply_cls, run)


def _many(ctx: Ctx, images: Sequence[pb.Image], reply_cls: type[Any], run: Fill) -> Any:
    _, height, width = ctx.model.spec.input_shape
    chunk = max(1, ctx.limits.max_batch_pixels // (height * width))
    reply = reply_cls()
    items = [reply.items.add() for _ in images]
    pending: list[tuple[list[int], torch.Tensor]] = []
    count = 0  # images in pending

    def flush() -> None:
        ctx.check_stop()
        x = pending[0][1] if len(pending) == 1 else torch.cat([x for _, x in pending])
        with ctx.threads(x):
            run(x, [items[position] for positions, _ in pending for position in positions], ctx.should_stop)
        pending.clear()

    start = 0
    while start < len(images):
        # A window that at most fills the chunk: batches hold the same images as when each image
        # was decoded and added in turn, flushing at the chunk-th that decoded.
        end = min(len(images), start + chunk - count)
        pieces, errors = ctx.inputs(images[start:end], first=start)
        for position, error in errors.items():
            items[start + position].error.CopyFrom(error)
        for positions, x in pieces:
            pending.append(([start + p for p in positions], x))
            count += len(positions)
        if count >= chunk:
            flush()
            count = 0
        start = end
    if pending:
        flush()
    return reply


def fill_classify_answers(
    out: Sequence[pb.ClassifyResponse],
    logits: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    labels: Sequence[str],
) -> None:
    """Fill each answer's predictions (top-k ``indices`` and probabilities ``values``) and logits row."""
    rows = np.ascontiguousarray(logits.cpu().numpy(), dtype="<f4")
    # One tobytes for all rows, sliced per answer: for 256 answers a quarter of this loop's time.
    data, size, shape = rows.tobytes(), rows.shape[1] * 4, rows.shape[1:]
    for i, (reply, top, probs) in enumerate(zip(out, indices.tolist(), values.tolist(), strict=True)):
        add = reply.predictions.add
        for c, p in zip(top, probs, strict=True):
            add(index=c, label=labels[c], probability=p)
        tensor = reply.logits
        tensor.dtype = pb.Tensor.FLOAT32
        tensor.shape.extend(shape)
        tensor.data = data[i * size : (i + 1) * size]


@handler("Classify", batched=True)
def classify(ctx: Ctx, request: pb.ClassifyRequest, params: None) -> pb.ClassifyResponse:
    classes = ctx.model.spec.num_classes
    top_k = request.top_k if request.HasField("top_k") else 5
    if top_k < 1:
        raise BadRequest(f"top_k must be at least 1, got {top_k}", field="top_k")
    top_k = min(top_k, classes)  # documented: above the class count returns every class
    # Opt-in: a classification is read as numbers; the echoed 224-px input and its PNG were 99.4 %
    # of an AlexNet answer (698,563 bytes with them, 4,248 without).
    include_input = _include(request, "include_input", False)
    labels = ctx.model.spec.labels
    module = ctx.module

    def run(x: torch.Tensor, out: list[pb.ClassifyResponse], should_stop: Callable[[], bool]) -> None:
        with torch.inference_mode():
            logits = module(x).float()
            values, indices = torch.softmax(logits, dim=1).topk(top_k, dim=1)
        fill_classify_answers(out, logits, values, indices, labels)
        if include_input:
            for i, reply in enumerate(out):
                reply.input.CopyFrom(_input_echo(x[i], png=True))

    # Concurrent single-image calls with the same answer options share one forward.
    return _per_image(ctx, request, pb.ClassifyResponse, run, batch_key=(top_k, include_input))


# -- single-pass methods ------------------------------------------------------------------------


@handler("Activations")
def activations(ctx: Ctx, request: pb.ActivationsRequest, params: None) -> pb.ActivationsResponse:
    from interp.activations import activations as compute

    if not request.layers:
        raise BadRequest(
            f"at least one layer is required; see DescribeModel for {ctx.model.spec.name}'s layers", field="layers"
        )
    requested = list(dict.fromkeys(request.layers))  # a layer named twice is computed and sent once
    paths = [ctx.layer(name, field=f"layers[{i}]") for i, name in enumerate(requested)]
    top_k = request.top_k if request.HasField("top_k") else 0
    if top_k < 0:
        raise BadRequest(f"top_k must be >= 0, got {top_k}", field="top_k")
    include = request.include_tensors if request.HasField("include_tensors") else True
    include_input = _include(request, "include_input", True)
    pngs = _include(request, "include_pngs", True)
    count = max(1, len(request.images))
    ctx.check_budget("Activations", count * _activation_bytes(ctx.model, paths, include))
    module = ctx.module

    def run(x: torch.Tensor, out: list[pb.ActivationsResponse], should_stop: Callable[[], bool]) -> None:
        result = compute(module, x, list(dict.fromkeys(paths)), top_k=top_k)
        for i, reply in enumerate(out):
            layers = []
            for name, path in zip(requested, paths, strict=True):
                ctx.check_stop()
                act = result[path]
                top = act.top_channels[i].tolist() if top_k else []
                sample = act.tensor[i]
                grid = b""
                if pngs and sample.dim() == 3:
                    grid = rendering.encode_png(rendering.channel_grid(sample, top or None))
                layers.append(
                    pb.LayerActivation(
                        layer=path,
                        requested=name,
                        activation=convert.tensor(sample) if include else None,
                        channel_mean=convert.tensor(act.channel_mean[i]),
                        channel_max=convert.tensor(act.channel_max[i]),
                        top_channels=top,
                        grid_png=grid,
                    )
                )
            reply.layers.extend(layers)
            reply.resolved_top_k = top_k
            if include_input:
                reply.input.CopyFrom(_input_echo(x[i], png=pngs))

    return _per_image(ctx, request, pb.ActivationsResponse, run)


def _activation_bytes(model: LoadedModel, paths: Sequence[str], include_tensors: bool) -> int:
    """Bytes the answer will carry: float32 tensors (when sent) plus an 8-bit grid per layer."""
    shapes = {info.name: info.output_shape for info in model.layers}
    total = 0
    for path in dict.fromkeys(paths):
        elements = int(np.prod(shapes.get(path, (1,))))
        total += elements * (4 if include_tensors else 0) + elements  # grid PNG: at most 1 byte a value
    return total


@handler("Kernels")
def kernels(ctx: Ctx, request: pb.KernelsRequest, params: None) -> pb.KernelsResponse:
    from interp.kernels import kernels as compute

    path = ctx.layer(request.layer, field="layer")
    result = compute(ctx.module, path)
    # Colour patches only where the kernel's 3 input channels ARE the image's R, G, B.
    first_conv = next((info.name for info in ctx.model.layers if info.has_kernels), None)
    rgb = result.rgb and ctx.model.spec.input_shape[0] == 3 and path == first_conv
    return pb.KernelsResponse(
        layer=path,
        weights=convert.tensor(result.weights),
        bias=convert.tensor(result.bias) if result.bias is not None else None,
        rgb=rgb,
        grid_png=rendering.encode_png(rendering.kernel_grid(result.weights, rgb=rgb)),
    )


def _resolve_saliency(params: SaliencyParams, model: LoadedModel, request: pb.SaliencyRequest) -> SaliencyParams:
    if request.method not in SALIENCY_METHOD_PARAMS:
        valid = ", ".join(SALIENCY_METHOD_PARAMS)
        raise BadRequest(f"unknown saliency method {shown(request.method)}; valid methods: {valid}", field="method")
    reads = set(SALIENCY_METHOD_PARAMS[request.method]) | set(SALIENCY_RENDERING)
    for field, _ in request.params.ListFields():
        if field.name not in reads:
            raise BadRequest(
                f"parameter {field.name} does not apply to {request.method} (it reads: {', '.join(sorted(reads))})",
                field=f"params.{field.name}",
            )
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
        params = dataclasses.replace(params, layer=model.resolve_layer(layer))
    return params


SALIENCY_RENDERING = ("clip_percentile", "colormap")


def _saliency_applies(request: pb.SaliencyRequest) -> tuple[str, ...]:
    return (*SALIENCY_METHOD_PARAMS.get(request.method, ()), *SALIENCY_RENDERING)


BATCHED_SALIENCY = ("gradient", "gradient_x_input")
"""Saliency methods computed in micro-batches: one pass, each image's gradient its own."""


@handler("Saliency", params=SaliencyParams, resolve=_resolve_saliency, applies=_saliency_applies, batched=True)
def saliency(ctx: Ctx, request: pb.SaliencyRequest, params: SaliencyParams) -> pb.SaliencyResponse:
    from interp.saliency import saliency as compute

    samples = {"smoothgrad": params.samples, "integrated_gradients": params.steps}.get(request.method, 1)
    _, height, width = ctx.model.spec.input_shape
    # One forward holds min(batch_size, samples) copies of the input; all of them together x samples.
    ctx.check_work("Saliency", batch=min(params.batch_size, samples), side=max(height, width), steps=1)
    ctx.replicas = min(params.batch_size, samples)
    target = ctx.target_index(request.target)
    include_input = _include(request, "include_input", True)
    pngs = _include(request, "include_pngs", True)
    applies = _saliency_applies(request)
    module = ctx.module

    def run(x: torch.Tensor, out: list[pb.SaliencyResponse], should_stop: Callable[[], bool]) -> None:
        # No separate forward for the prediction: saliency resolves an unset target to the
        # predicted class and returns the probabilities from its own (clean-input) forward.
        result = compute(
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
                reply.input.CopyFrom(_input_echo(x[i], png=pngs))

    # gradient / gradient_x_input: concurrent single-image calls with the same method, parameters,
    # target and answer options share one pass; the others compute alone.
    key = (request.method, params, target, include_input, pngs) if request.method in BATCHED_SALIENCY else None
    return _per_image(ctx, request, pb.SaliencyResponse, run, batch_key=key)


ATTACK_PARAMS = {
    "fgsm": (),
    "bim": ("step_size", "steps", "random_start"),
    "pgd": ("step_size", "steps", "random_start", "seed"),
}


def _resolve_attack(params: AttackParams, model: LoadedModel, request: pb.AttackRequest) -> AttackParams:
    if request.method not in ATTACK_PARAMS:
        raise BadRequest(
            f"unknown attack method {shown(request.method)}; valid methods: {', '.join(ATTACK_PARAMS)}", field="method"
        )
    if not request.epsilons:
        raise BadRequest("at least one epsilon is required, each in (0, 1] (pixel units)", field="epsilons")
    for i, epsilon in enumerate(request.epsilons):
        if not (np.isfinite(epsilon) and 0 < epsilon <= 1):
            raise BadRequest(f"epsilon must be in (0, 1] (pixel units), got {epsilon}", field=f"epsilons[{i}]")
    reads = ATTACK_PARAMS[request.method]
    for field, _ in request.params.ListFields():
        # bim with random_start is allowed (it is pgd's start); the seed then applies too
        if field.name not in reads and not (request.method == "bim" and field.name == "seed"):
            raise BadRequest(
                f"parameter {field.name} does not apply to {request.method}"
                + (
                    f" (it reads: {', '.join(reads)})"
                    if reads
                    else " (fgsm is one step with no parameters: use bim or pgd for steps or a random start)"
                ),
                field=f"params.{field.name}",
            )
    return params


@handler("Attack", params=AttackParams, resolve=_resolve_attack, applies=lambda r: ATTACK_PARAMS.get(r.method, ()))
def attack(ctx: Ctx, request: pb.AttackRequest, params: AttackParams) -> pb.AttackResponse:
    from interp.adversarial import attack as compute

    target = ctx.target_index(request.target)
    label = _true_label(ctx, request, target)
    include_input = _include(request, "include_input", True)
    pngs = _include(request, "include_pngs", True)
    epsilons = [float(e) for e in request.epsilons]
    resolved = _resolved_attack(request.method, epsilons[-1], params)
    applies = tuple(name for name in ATTACK_PARAMS[request.method] if name != "step_size")  # per epsilon
    if request.method == "bim" and resolved.random_start:
        applies = (*applies, "seed")
    resolved_message = convert.params_to_proto(resolved, pb.AttackParams, only=applies)
    module = ctx.module

    def classes(count: int, index: int | None, device: torch.device) -> torch.Tensor | None:
        return None if index is None else torch.full((count,), index, dtype=torch.long, device=device)

    def run(x: torch.Tensor, out: list[pb.AttackResponse], should_stop: Callable[[], bool]) -> None:
        with torch.no_grad():
            probs = torch.softmax(module(x), dim=1)
        originals = probs.argmax(dim=1).tolist()
        # An image the model already gets wrong (label given) is a robust-accuracy error: success
        # without perturbation, no attack run on it.
        clean = [label is not None and label != original for original in originals]
        attacked = [i for i, is_clean in enumerate(clean) if not is_clean]
        outcomes: list[list[pb.AttackOutcome]] = [[] for _ in originals]
        for epsilon in epsilons:
            if attacked:
                result = compute(
                    module,
                    x[attacked],
                    method=request.method,
                    epsilon=epsilon,
                    labels=classes(len(attacked), label, x.device),
                    target=classes(len(attacked), target, x.device),
                    params=params,
                    should_stop=ctx.should_stop,
                    per_image=True,  # each image as it would be alone: equal to one call per image
                )
                for j, i in enumerate(attacked):
                    adversarial = result.adversarial[j].detach().cpu()
                    predicted = int(result.predictions[j])
                    outcome = pb.AttackOutcome(
                        epsilon=epsilon,
                        adversarial=convert.tensor(adversarial),
                        prediction=ctx.prediction(predicted, result.probabilities[j, predicted]),
                        success=bool(result.success[j]),
                        linf=float(result.linf[j]),
                        l2=float(result.l2[j]),
                        step_size=float(result.params.step_size or 0.0),
                    )
                    if pngs:
                        outcome.adversarial_png = rendering.encode_png(rendering.to_uint8_image(adversarial))
                        outcome.perturbation_png = rendering.encode_png(
                            rendering.perturbation_image(adversarial - x[i].cpu(), epsilon)
                        )
                    outcomes[i].append(outcome)
            for i, is_clean in enumerate(clean):
                if is_clean:
                    outcomes[i].append(_clean_outcome(ctx, request, x[i : i + 1], probs[i], epsilon, params, pngs))
        for i, (reply, original) in enumerate(zip(out, originals, strict=True)):
            reply.method = request.method
            reply.original.CopyFrom(ctx.prediction(original, probs[i, original]))
            reply.targeted = target is not None
            reply.outcomes.extend(outcomes[i])
            reply.resolved.CopyFrom(resolved_message)
            if target is not None:
                reply.target.CopyFrom(ctx.prediction(target, probs[i, target]))
            if label is not None:
                reply.label.CopyFrom(ctx.prediction(label, probs[i, label]))
                reply.clean_misclassified = clean[i]
            if include_input:
                reply.input.CopyFrom(_input_echo(x[i], png=pngs))

    return _per_image(ctx, request, pb.AttackResponse, run)


def _true_label(ctx: Ctx, request: Any, target: int | None) -> int | None:
    """The request's ``label`` (true class) as an index; None when unset. Refused with a target."""
    if not request.HasField("label"):
        return None
    if target is not None:
        raise BadRequest("label (untargeted: the true class) and target (targeted) exclude each other", field="label")
    if request.label.WhichOneof("kind") is None:
        raise BadRequest("label is set but names no class: give label.index or label.label", field="label")
    return ctx.target_index(request.label, field="label")


def _resolved_attack(method: str, epsilon: float, params: AttackParams) -> AttackParams:
    from interp.adversarial import resolve_params

    return resolve_params(method, epsilon, params)


def _clean_outcome(
    ctx: Ctx,
    request: pb.AttackRequest,
    x: torch.Tensor,
    probs: torch.Tensor,
    epsilon: float,
    params: AttackParams,
    pngs: bool = True,
) -> pb.AttackOutcome:
    image = x[0].detach().cpu()
    original = int(probs.argmax())
    outcome = pb.AttackOutcome(
        epsilon=epsilon,
        adversarial=convert.tensor(image),
        prediction=ctx.prediction(original, probs[original]),
        success=True,
        linf=0.0,
        l2=0.0,
        step_size=float(_resolved_attack(request.method, epsilon, params).step_size or 0.0),
    )
    if pngs:
        outcome.adversarial_png = rendering.encode_png(rendering.to_uint8_image(image))
        outcome.perturbation_png = rendering.encode_png(rendering.perturbation_image(image - image, epsilon))
    return outcome


# -- iterative methods (streamed) ---------------------------------------------------------------


def _resolve_visualize(
    params: FeatureVisParams, model: LoadedModel, request: pb.VisualizeFilterRequest
) -> FeatureVisParams:
    from interp.feature_vis import resolve

    try:  # a fully connected layer (class logits) takes the naturalness preset by default
        path = model.resolve_layer(request.layer) if request.layer else None
    except UnknownLayer:
        path = None  # the handler refuses it, naming the field
    shape = next((info.output_shape for info in model.layers if info.name == path), None)
    dense = None if shape is None else len(shape) == 1
    return resolve(params, in_channels=model.spec.input_shape[0], input_size=model.spec.input_shape[1], dense=dense)


@handler("VisualizeFilter", params=FeatureVisParams, resolve=_resolve_visualize)
def visualize_filter(ctx: Ctx, request: pb.VisualizeFilterRequest, params: FeatureVisParams) -> Streamed:
    from interp.feature_vis import visualize_filter as compute

    model = ctx.model
    path = ctx.layer(request.layer, field="layer")
    info = next(i for i in model.layers if i.name == path)
    channels = list(request.channels)
    if not channels:
        raise BadRequest(f"at least one channel is required, in 0..{info.channels - 1}", field="channels")
    for i, c in enumerate(channels):
        if not 0 <= c < info.channels:
            raise BadRequest(
                f"channel {c} out of range for {path}: valid 0..{info.channels - 1}", field=f"channels[{i}]"
            )
    in_channels, side = model.spec.input_shape[0], model.spec.input_shape[1]
    batch, size = len(channels) * int(params.restarts or 1), int(params.image_size or side)
    ctx.check_work("VisualizeFilter", batch=batch, side=size, steps=int(params.steps or 1))
    label = ctx.layer_label(request.layer, path)
    mean_image = None
    if params.start_from_mean:
        mean_image = ctx.servicer.mean_image(model, size)

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        return compute(
            ctx.module,
            path,
            channels,
            in_channels=in_channels,
            input_size=side,
            params=params,
            mean_image=mean_image,
            on_step=on_step,
            should_stop=should_stop,
        )

    def finish(result: Any) -> pb.VisualizeFilterResult:
        images = result.images.detach().cpu()
        return pb.VisualizeFilterResult(
            layer=path,
            channels=channels,
            images=convert.tensor(images),
            pngs=[rendering.encode_png(rendering.to_uint8_image(image)) for image in images],
            grid_png=rendering.encode_png(rendering.image_grid(images, labels=[f"{label}:{c}" for c in channels])),
            activations=[float(a) for a in result.activations],
            resolved=convert.params_to_proto(result.params, pb.VisualizeFilterParams),
        )

    return Streamed(run, finish, elements=ctx.elements(batch, size))


def _resolve_dream(params: DeepDreamParams, model: LoadedModel, request: pb.DeepDreamRequest) -> DeepDreamParams:
    from interp.deepdream import resolve

    return resolve(params, in_channels=model.spec.input_shape[0], input_size=model.spec.input_shape[1])


@handler("DeepDream", params=DeepDreamParams, resolve=_resolve_dream)
def deep_dream(ctx: Ctx, request: pb.DeepDreamRequest, params: DeepDreamParams) -> Streamed:
    from interp.deepdream import deepdream

    if not request.layers:
        raise BadRequest(
            f"at least one layer is required; see DescribeModel for {ctx.model.spec.name}'s layers", field="layers"
        )
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
            png=rendering.encode_png(rendering.to_uint8_image(image)),
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
    from interp.interpolation import DEFAULT_ALPHAS, MAX_ALPHA, resolve

    alphas = list(request.alphas) or list(DEFAULT_ALPHAS)
    for i, alpha in enumerate(alphas):
        if not (np.isfinite(alpha) and abs(alpha) <= MAX_ALPHA):
            raise BadRequest(
                f"alphas must be finite numbers in [-{MAX_ALPHA:g}, {MAX_ALPHA:g}], got {alpha}", field=f"alphas[{i}]"
            )
    return resolve(params, num_alphas=len(alphas))


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
    from interp.interpolation import DEFAULT_ALPHAS, attribute_vector, features
    from interp.interpolation import interpolate_features as compute

    model = ctx.model
    names = list(request.layers) or list(model.spec.default_dfi_layers)
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
        if mode == "target":
            direction = features(ctx.module, target_image, layers) - features(ctx.module, source, layers)
        else:
            direction = attribute_vector(ctx.module, positive, negative, layers)
        return compute(
            ctx.module,
            source,
            layers,
            direction=direction,
            alphas=alphas,
            params=params,
            on_step=on_step,
            should_stop=should_stop,
        )

    def finish(results: Any) -> pb.InterpolateFeaturesResult:
        out = []
        for item in results:
            image = item.images[:1].detach()
            with torch.no_grad():
                probs = torch.softmax(ctx.module(image), dim=1)[0]
            best = int(probs.argmax())
            out.append(
                pb.AlphaResult(
                    alpha=float(item.alpha),
                    image=convert.tensor(image[0].cpu()),
                    png=rendering.encode_png(rendering.to_uint8_image(image[0].cpu())),
                    feature_error=float(item.feature_error[0]),
                    prediction=ctx.prediction(best, probs[best]),
                )
            )
        return pb.InterpolateFeaturesResult(
            input=ctx.input_message(source),
            layers=layers,
            results=out,
            resolved=convert.params_to_proto(params, pb.InterpolateFeaturesParams, only=_interpolate_applies(request)),
            alphas=alphas,
        )

    return Streamed(run, finish)


# -- minimal perturbations ------------------------------------------------------------------------


def _resolve_minimal(
    params: MinimalAttackParams, model: LoadedModel, request: pb.MinimalAttackRequest
) -> MinimalAttackParams:
    from interp.minimal import METHODS as MINIMAL_METHODS
    from interp.minimal import applies, resolve

    if request.method not in MINIMAL_METHODS:
        raise BadRequest(
            f"unknown minimal-attack method {request.method!r}; valid methods: {', '.join(MINIMAL_METHODS)}",
            field="method",
        )
    reads = applies(request.method)
    for field, _ in request.params.ListFields():
        if field.name not in reads:
            raise BadRequest(
                f"parameter {field.name} does not apply to {request.method} (it reads: {', '.join(reads)})",
                field=f"params.{field.name}",
            )
    return resolve(request.method, params, model.spec.num_classes)


def _minimal_applies(request: pb.MinimalAttackRequest) -> tuple[str, ...]:
    from interp.minimal import applies

    return applies(request.method)


@handler("MinimalAttack", params=MinimalAttackParams, resolve=_resolve_minimal, applies=_minimal_applies)
def minimal_attack(ctx: Ctx, request: pb.MinimalAttackRequest, params: MinimalAttackParams) -> pb.MinimalAttackResponse:
    from interp.minimal import DEEPFOOL_METHODS, deepfool, minimal_epsilon

    method = request.method
    if request.HasField("target"):
        if request.target.WhichOneof("kind") is None:
            raise BadRequest("a targeted search needs a target class: set target.index or target.label", field="target")
        if method in DEEPFOOL_METHODS:
            raise BadRequest(f"{method} is untargeted; a targeted minimal search uses fgsm, bim or pgd", field="target")
    target = ctx.target_index(request.target)
    label = _true_label(ctx, request, target)
    x = ctx.input(request.image)
    with torch.no_grad():
        probs = torch.softmax(ctx.module(x), dim=1)[0]
    original = int(probs.argmax())
    device = x.device
    response = pb.MinimalAttackResponse(
        input=ctx.input_message(x),
        method=method,
        original=ctx.prediction(original, probs[original]),
        targeted=target is not None,
    )
    if method in DEEPFOOL_METHODS:
        result = deepfool(
            ctx.module,
            x,
            norm=method.removeprefix("deepfool_"),
            labels=None if label is None else torch.tensor([label], device=device),
            params=params,
            should_stop=ctx.should_stop,
        )
        adversarial = result.adversarial[0].detach().cpu()
        goal = int(result.labels[0])
        response.found = bool(result.success[0])
        response.clean_misclassified = bool(result.clean_success[0])
        response.success_raw = bool(result.success_raw[0])
        response.linf_raw = float(result.linf_raw[0])
        response.l2_raw = float(result.l2_raw[0])
        response.rounded_outward = bool(result.rounded_outward[0])
        response.iterations = int(result.iterations[0])
        response.level = -1
        response.monotone = True
        scale = max(float(result.linf[0]), 1 / 255)
    else:
        found = minimal_epsilon(
            ctx.module,
            x,
            method=method,
            labels=None if label is None else torch.tensor([label], device=device),
            target=None if target is None else torch.tensor([target], device=device),
            params=params,
            should_stop=ctx.should_stop,
        )
        adversarial = found.adversarial[0].detach().cpu()
        goal = int(found.labels[0])
        level = int(found.levels[0])
        response.found = bool(found.found[0])
        response.clean_misclassified = bool(found.clean_success[0]) and target is None
        response.level = level
        # found: the minimal radius; not found: the largest radius tried (max_epsilon on the 8-bit grid)
        response.epsilon = (max(level, 0) if response.found else found.k_max) / 255
        response.runs = int(found.runs[0])
        response.monotone = bool(found.monotone[0])
        response.violations.extend(found.violations[0])
        scale = max(level, 1) / 255
    with torch.no_grad():
        adv_probs = torch.softmax(ctx.module(adversarial[None].to(device)), dim=1)[0]
    predicted = int(adv_probs.argmax())
    delta = adversarial - x[0].cpu()
    response.label.CopyFrom(ctx.prediction(goal, probs[goal]))
    response.adversarial.CopyFrom(convert.tensor(adversarial))
    response.adversarial_png = rendering.encode_png(rendering.to_uint8_image(adversarial))
    response.perturbation_png = rendering.encode_png(rendering.perturbation_image(delta, scale))
    response.prediction.CopyFrom(ctx.prediction(predicted, adv_probs[predicted]))
    response.success = predicted == goal if target is not None else predicted != goal
    response.linf = float(delta.abs().max())
    response.l2 = float(delta.norm())
    response.resolved.CopyFrom(convert.params_to_proto(params, pb.MinimalAttackParams, only=_minimal_applies(request)))
    return response


# -- robustness over a dataset ------------------------------------------------------------------

def _attack_images(
    ctx: Ctx, name: str, limit: int, true_labels: bool
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The first ``limit`` images of a registered dataset, preprocessed as the model's input.

    Returns ``(x (N, C, H, W) in [0, 1], labels (N,) in the model's class indices or None, skipped)``:
    images that cannot be read or converted are skipped and counted, never fatal. With true labels the
    dataset must fit the model: its classes must all be classes of the model (matched by name, so an
    image folder with ``Sneaker/``, ``Bag/`` sub-folders works for the Fashion-MNIST LeNets); a
    dataset without class sub-folders has no true labels.
    """
    from server.dataset_index import load_first

    dataset = _dataset(ctx, name)
    spec = ctx.model.spec
    label_map: np.ndarray | None = None
    if true_labels:
        model_labels = {label: i for i, label in enumerate(spec.labels)}
        foreign = [c for c in dataset.classes if c not in model_labels]
        if not dataset.classes or foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            why = (
                "it has no class labels (no class sub-folders)"
                if not dataset.classes
                else f"its classes {shown} are not classes of the model"
            )
            raise BadRequest(
                f"dataset {name} does not fit {spec.name}: {why}; with true labels AttackDataset needs a "
                f"dataset labelled with {spec.name}'s classes (or true_labels=false to attack the predictions)",
                field="dataset",
            )
        label_map = np.array([model_labels[c] for c in dataset.classes], dtype=np.int64)
    ids, x, skipped = load_first(dataset, spec.preprocessing, limit)
    if not ids:
        raise BadRequest(
            f"dataset {name} does not fit {spec.name}: none of its first {limit} images could be read and "
            f"converted to the model's input",
            field="dataset",
        )
    x = x.to(ctx.servicer.config.device)
    if label_map is None:
        return x, None, skipped
    labels = label_map[dataset.labels()[np.asarray(ids, dtype=np.int64)]]
    return x, torch.from_numpy(labels).to(x.device), skipped


def _resolve_dataset(
    params: AttackDatasetParams, model: LoadedModel, request: pb.AttackDatasetRequest
) -> AttackDatasetParams:
    from interp.minimal import resolve_dataset_params

    methods = list(request.methods)
    if not methods:
        raise BadRequest(
            "at least one method is required (fgsm, bim, pgd, deepfool_linf, deepfool_l2)", field="methods"
        )
    if not request.epsilons:
        raise BadRequest("at least one epsilon is required (pixel units)", field="epsilons")
    for i, epsilon in enumerate(request.epsilons):
        l2 = methods == ["deepfool_l2"]
        if not (np.isfinite(epsilon) and 0 <= epsilon and (l2 or epsilon <= 1)):
            raise BadRequest(
                f"epsilon must be in {'[0, inf)' if l2 else '[0, 1]'} (pixel units), got {epsilon}",
                field=f"epsilons[{i}]",
            )
    return resolve_dataset_params(params, methods, model.spec.num_classes)


@handler("AttackDataset", params=AttackDatasetParams, resolve=_resolve_dataset)
def attack_dataset(ctx: Ctx, request: pb.AttackDatasetRequest, params: AttackDatasetParams) -> Streamed:
    from interp.minimal import curve_png, robustness

    limit = request.limit if request.HasField("limit") else 1000
    if limit < 1:
        raise BadRequest(f"limit must be at least 1, got {limit}", field="limit")
    if limit > ctx.limits.max_dataset_images:
        raise BadRequest(
            f"the default limit ({limit}) is above this server's max_dataset_images={ctx.limits.max_dataset_images}",
            field="limit",
        )
    true_labels = request.true_labels if request.HasField("true_labels") else True
    methods, epsilons = list(request.methods), [float(e) for e in request.epsilons]
    x, y, skipped = _attack_images(ctx, request.dataset, limit, true_labels)
    attacked = len(x)

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        return robustness(
            ctx.module,
            x,
            y,
            methods=methods,
            epsilons=epsilons,
            params=params,
            should_stop=should_stop,
            on_step=on_step,
        )

    def finish(result: Any) -> pb.AttackDatasetResult:
        correct = result.clean_correct
        return pb.AttackDatasetResult(
            dataset=request.dataset,
            images=attacked,
            skipped=skipped,
            clean_accuracy=float(correct.float().mean()),
            epsilons=result.epsilons,
            curves=[
                pb.MethodCurve(
                    method=curve.method,
                    accuracy=curve.accuracy,
                    levels=curve.levels,
                    minimal=convert.tensor(curve.minimal.float()),
                    median_minimal=curve.median_minimal(correct),
                    non_monotone=curve.non_monotone,
                    runs=curve.runs,
                    not_found=curve.not_found,
                )
                for curve in result.curves
            ],
            curve_png=curve_png(result, f"{ctx.model.spec.name} on {request.dataset} ({attacked} images)"),
            resolved=convert.params_to_proto(result.params, pb.AttackDatasetParams),
            true_labels=true_labels,
            norm=result.norm,
        )

    return Streamed(run, finish)


# -- dataset-level views (activation index) ---------------------------------------------------


def _views(ctx: Ctx) -> Any:
    from server.dataset_index import views

    return views(ctx.servicer)


def _dataset(ctx: Ctx, name: str) -> Any:
    from models.dataset_registry import UnknownDataset

    if not name:
        raise BadRequest(
            f"dataset is required; this server has: {', '.join(_views(ctx).datasets.names())}", field="dataset"
        )
    try:
        return _views(ctx).datasets.get(name)
    except UnknownDataset as exc:
        raise BadRequest(str(exc.args[0]), field="dataset") from None


@handler("ListDatasets", model="none")
def list_datasets(ctx: Ctx, request: pb.ListDatasetsRequest, params: None) -> pb.ListDatasetsResponse:
    from models.datasets import DatasetError, DatasetNotFound

    registry = _views(ctx).datasets
    out = []
    for name in registry.names():
        dataset = registry.get(name)
        try:
            size, manifest, native = dataset.size, dataset.manifest(), dataset.native_shape()
        except (DatasetNotFound, DatasetError, OSError):
            continue  # not installed on this server: not indexable, not listed
        fits = [m.spec.name for m in ctx.hub.all() if native is not None and tuple(m.spec.input_shape) == native]
        out.append(
            pb.DatasetInfo(
                name=name,
                size=size,
                classes=list(dataset.classes),
                fits_models=fits,
                manifest_sha256=manifest.partition(":")[2],
                kind=dataset.kind,
            )
        )
    return pb.ListDatasetsResponse(datasets=out)


def _index_layers(ctx: Ctx, names: Sequence[str]) -> list[str]:
    from interp.dataset_index import default_layers

    if not names:
        return default_layers(ctx.module)
    layers = [ctx.layer(name, field=f"layers[{i}]") for i, name in enumerate(names)]
    return list(dict.fromkeys(layers))


def _resolve_build(params: BuildIndexParams, model: LoadedModel, request: pb.BuildIndexRequest) -> BuildIndexParams:
    if request.params.HasField("batch_size"):
        if params.batch_size < 1:
            raise BadRequest(f"batch_size must be >= 1, got {params.batch_size}", field="params.batch_size")
        return params
    from server.dataset_index import default_batch

    return dataclasses.replace(params, batch_size=default_batch(model.spec.input_shape[1]))


@handler("BuildIndex", params=BuildIndexParams, resolve=_resolve_build)
def build_index(ctx: Ctx, request: pb.BuildIndexRequest, params: BuildIndexParams) -> Streamed:
    from interp.progress import StepEvent

    side = ctx.model.spec.input_shape[1]
    ctx.check_work("BuildIndex", batch=params.batch_size, side=side, steps=1)
    dataset = _dataset(ctx, request.dataset)
    layers = _index_layers(ctx, request.layers)
    model = ctx.model
    store = _views(ctx).store

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        def progress(p: Any) -> None:
            on_step(StepEvent(p.images_done, p.total, p.images_per_s, p.elapsed_s, "indexing"))

        return store.build(
            ctx.module,
            model_name=model.spec.name,
            weights_sha256=model.weights.sha256,
            spec=model.spec.preprocessing,
            dataset=dataset,
            layers=layers,
            k=params.k,
            batch_size=params.batch_size,
            device=ctx.servicer.config.device,
            on_progress=progress,
            should_stop=should_stop,
        )

    def finish(result: Any) -> pb.BuildIndexResult:
        stored, reused, figures = result
        meta = stored.meta
        return pb.BuildIndexResult(
            dataset=dataset.name,
            index_id=stored.folder,
            layers=meta["layers"],
            images=int(meta["indexed"]),
            skipped=int(meta.get("skipped", 0)),
            reused=reused,
            seconds=float(figures.get("seconds", 0.0)),
            images_per_s=float(figures.get("images_per_s", meta.get("images_per_s", 0.0))),
            peak_rss_growth_mb=float(figures.get("peak_rss_growth_mb", 0.0)),
            resolved=convert.params_to_proto(params, pb.BuildIndexParams),
        )

    return Streamed(run, finish)


def _stored_index(ctx: Ctx, dataset: Any, layer: str, k: int, requested_layer: str) -> Any:
    from server.dataset_index import IndexUnavailable, base_key

    model = ctx.model
    base = base_key(model.weights.sha256, dataset.manifest(), model.spec.preprocessing)
    stored = _views(ctx).store.find(base, layer, k)
    if stored is None:
        raise IndexUnavailable(
            f"no index of {dataset.name} for {model.spec.name} holds layer {requested_layer} with k >= {k}; "
            f"build one first: BuildIndex (CLI: interp index {model.spec.name} {dataset.name}"
            + (f" --k {k}" if k > 64 else "")
            + ")"
        )
    return stored


def _label(ctx: Ctx, dataset: Any, image_id: int) -> tuple[int, str]:
    labels = dataset.labels()
    label = int(labels[image_id])
    return label, (dataset.classes[label] if 0 <= label < len(dataset.classes) else "")


@handler("TopActivations")
def top_activations(ctx: Ctx, request: pb.TopActivationsRequest, params: None) -> pb.TopActivationsResponse:
    import cv2

    from interp import dataset_index as di
    from server.dataset_index import images_by_id

    dataset = _dataset(ctx, request.dataset)
    path = ctx.layer(request.layer, field="layer")
    info = next(i for i in ctx.model.layers if i.name == path)
    k = request.k if request.HasField("k") else 9
    pngs = request.entry_pngs if request.HasField("entry_pngs") else False
    projections = request.projections if request.HasField("projections") else False
    channels = list(request.channels) or list(range(min(16, info.channels)))
    for i, c in enumerate(channels):
        if not 0 <= c < info.channels:
            raise BadRequest(
                f"channel {c} out of range for {path}: valid 0..{info.channels - 1}", field=f"channels[{i}]"
            )
    stored = _stored_index(ctx, dataset, path, k, request.layer)
    values, ids, ys, xs = stored.top(path)
    spatial = info.rf_size is not None and len(info.output_shape) == 3
    wanted = sorted({int(i) for c in channels for i in ids[c, :k] if i >= 0})
    images = dict(zip(wanted, images_by_id(dataset, ctx.model.spec.preprocessing, wanted), strict=True))
    side = ctx.model.spec.input_shape[1]
    scale = max(1, 56 // side)  # the whole image with its box: 56 px for LeNet (PNG encoding dominates)
    out, rows, row_labels = [], [], []
    cell_scale = max(1, 48 // (info.rf_size if spatial and info.rf_size else side))
    # Per image once, not per entry: the pixels and their 8-bit RGB zero-padded by a receptive field
    # on every side (the padding is crop_field's fill, 0), so each crop is a slice.
    pad = int(info.rf_size) if spatial and info.rf_size else 0
    padded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for image_id, image in images.items():
        pixels = image.numpy()
        c_, h_, w_ = pixels.shape
        wide = np.zeros((c_, h_ + 2 * pad, w_ + 2 * pad), dtype=np.float32)
        wide[:, pad : pad + h_, pad : pad + w_] = pixels
        rgb = np.zeros((h_ + 2 * pad, w_ + 2 * pad, 3), dtype=np.uint8)
        rgb[pad : pad + h_, pad : pad + w_] = _rgb(rendering.to_uint8_image(pixels))
        padded[image_id] = (wide, rgb)
    labels = dataset.labels()
    for c in channels:
        entries, cells = [], []
        for j in range(k):
            image_id = int(ids[c, j])
            if image_id < 0:
                break
            image = images[image_id]
            _, h, w = image.shape
            if spatial and info.rf_size and info.rf_jump and info.rf_start is not None:
                box = di.receptive_box(info.rf_size, info.rf_jump, info.rf_start, int(ys[c, j]), int(xs[c, j]))
            else:
                box = di.Box(0, 0, h, w)
            wide, rgb = padded[image_id]
            crop = wide[:, box.y0 + pad : box.y1 + pad, box.x0 + pad : box.x1 + pad]
            is_padded = di.clip_box(box, h, w) != box
            crop_rgb = rgb[box.y0 + pad : box.y1 + pad, box.x0 + pad : box.x1 + pad]
            big = cv2.resize(crop_rgb, None, fx=cell_scale, fy=cell_scale, interpolation=cv2.INTER_NEAREST)
            if is_padded:
                big = di.mark_padding(big, box, h, w, cell_scale)
            cells.append(big)
            label = int(labels[image_id])
            entries.append(
                pb.TopEntry(
                    image_id=image_id,
                    label=label,
                    label_name=dataset.classes[label] if 0 <= label < len(dataset.classes) else "",
                    value=float(values[c, j]),
                    y=int(ys[c, j]),
                    x=int(xs[c, j]),
                    box=pb.Box(y0=box.y0, x0=box.x0, y1=box.y1, x1=box.x1),
                    padded=is_padded,
                    crop=convert.tensor(crop),
                )
            )
            if pngs:
                entries[-1].crop_png = di.fast_png(rendering.to_uint8_image(crop))
                entries[-1].image_png = di.fast_png(di.draw_box(_rgb(rendering.to_uint8_image(image)), box, scale))
        out.append(pb.ChannelTop(channel=c, entries=entries))
        if cells:
            rows.append(cells)
            row_labels.append(str(c))
    if projections:
        _add_projections(ctx, path, out, images)
    return pb.TopActivationsResponse(
        dataset=dataset.name,
        layer=path,
        index_id=stored.folder,
        spatial=spatial,
        rf_size=int(info.rf_size) if spatial and info.rf_size else 0,
        channels=out,
        grid_png=rendering.encode_png(di.top_grid(rows, row_labels)) if rows else b"",
    )


def _add_projections(ctx: Ctx, path: str, channels: list[Any], images: dict[int, torch.Tensor]) -> None:
    """Each entry's guided-backprop projection of its unit, cut to its receptive-field box (one batch)."""
    from interp import dataset_index as di
    from interp.saliency import unit_guided_backprop

    entries = [(top.channel, e) for top in channels for e in top.entries]
    if not entries:
        return
    ctx.check_work("TopActivations", batch=len(entries), side=ctx.model.spec.input_shape[1], steps=1)
    device = ctx.servicer.config.device
    x = torch.stack([images[e.image_id] for _, e in entries]).to(device)
    units = torch.tensor([(c, e.y, e.x) for c, e in entries], dtype=torch.int64, device=device)
    maps = unit_guided_backprop(ctx.module, x, path, units[:, 0], units[:, 1], units[:, 2]).cpu()
    for (_, entry), projection in zip(entries, maps, strict=True):
        box = di.Box(entry.box.y0, entry.box.x0, entry.box.y1, entry.box.x1)
        entry.projection.CopyFrom(convert.tensor(di.crop_field(projection, box)[0]))


def _rgb(image: np.ndarray) -> np.ndarray:
    return (
        image if image.ndim == 3 and image.shape[2] == 3 else np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
    )


@handler("NearestNeighbors")
def nearest_neighbors(ctx: Ctx, request: pb.NearestNeighborsRequest, params: None) -> pb.NearestNeighborsResponse:
    from interp import dataset_index as di
    from server.dataset_index import images_by_id

    dataset = _dataset(ctx, request.dataset)
    path = ctx.layer(request.layer, field="layer")
    metric = request.metric or "cosine"
    if metric not in di.METRICS:
        raise BadRequest(f"unknown metric {request.metric!r}; valid: {', '.join(di.METRICS)}", field="metric")
    k = request.k if request.HasField("k") else 10
    x = ctx.input(request.image)
    stored = _stored_index(ctx, dataset, path, 1, request.layer)
    features = torch.from_numpy(stored.features(path))
    query = di.query_features(ctx.module, x, path).cpu()
    order, dist = di.nearest(features, query, k, metric, valid=torch.from_numpy(stored.present))
    ids = [int(i) for i, d in zip(order[0], dist[0], strict=True) if np.isfinite(float(d))]
    images = images_by_id(dataset, ctx.model.spec.preprocessing, ids)
    neighbors = []
    for image_id, d, image in zip(ids, dist[0].tolist(), images, strict=False):
        label, label_name = _label(ctx, dataset, image_id)
        neighbors.append(
            pb.Neighbor(
                image_id=image_id,
                label=label,
                label_name=label_name,
                distance=float(d),
                image=convert.tensor(image),
                png=rendering.encode_png(rendering.to_uint8_image(image)),
            )
        )
    grid_images = torch.stack([x[0].cpu(), *images]) if images else x.cpu()
    labels = ["query"] + [f"{n.label_name or n.image_id} {n.distance:.3g}" for n in neighbors]
    return pb.NearestNeighborsResponse(
        input=ctx.input_message(x),
        dataset=dataset.name,
        layer=path,
        metric=metric,
        index_id=stored.folder,
        neighbors=neighbors,
        grid_png=rendering.encode_png(rendering.image_grid(grid_images, labels=labels)),
    )


# -- embeddings (t-SNE / PCA maps over a dataset) ----------------------------------------------


def _embedding_applies(request: Any) -> tuple[str, ...]:
    from interp.embedding import TSNE_PARAMS

    return TSNE_PARAMS if (request.method or "tsne") == "tsne" else ()


def _embedding_method(request: Any) -> str:
    from interp.embedding import METHODS as EMBEDDING_METHODS

    method = request.method or "tsne"
    if method not in EMBEDDING_METHODS:
        raise BadRequest(
            f"unknown embedding method {request.method!r}; valid: {', '.join(EMBEDDING_METHODS)}", field="method"
        )
    return method


@dataclass(frozen=True)
class _MapRequest:
    dataset: Any
    path: str
    method: str
    points: int  # the first `points` dataset ids (fewer on the map when some are unreadable)
    params: Any
    key: str


def _map_request(ctx: Ctx, request: Any, params: Any) -> _MapRequest:
    """What names a map (Embedding and PlaceImages alike), checked before any work."""
    from interp.embedding import min_points
    from server.embedding import map_key

    method = _embedding_method(request)
    dataset = _dataset(ctx, request.dataset)
    path = ctx.layer(request.layer, field="layer")
    size = dataset.size
    cap = ctx.limits.max_embedding_points
    if request.HasField("limit"):
        points = min(request.limit, size)
    elif size > cap:
        raise BadRequest(
            f"{dataset.name} has {size:,} images, above this server's max_embedding_points={cap:,}: "
            f"set limit to at most {cap:,}",
            field="limit",
        )
    else:
        points = size
    if method == "tsne":
        if points < 4:
            raise BadRequest(f"t-SNE needs at least 4 points, got {points}", field="limit")
        if params.perplexity * 3 >= points:
            raise BadRequest(
                f"perplexity {params.perplexity:g} must be below N / 3 = {points / 3:.4g} for N = {points} points "
                f"(lower the perplexity, or use at least {min_points(params.perplexity)} points)",
                field="params.perplexity",
            )
        if params.pca_dims < 2:
            raise BadRequest(f"pca_dims must be at least 2, got {params.pca_dims}", field="params.pca_dims")
    elif points < 2:
        raise BadRequest(f"a PCA map needs at least 2 points, got {points}", field="limit")
    model = ctx.model
    key = map_key(
        weights_sha256=model.weights.sha256,
        manifest=dataset.manifest(),
        preprocessing=model.spec.preprocessing,
        layer=path,
        method=method,
        points=points,
        params=params,
        threads=torch.get_num_threads(),
    )
    return _MapRequest(dataset, path, method, points, params if method == "tsne" else None, key)


@handler("Embedding", params=EmbeddingParams, applies=_embedding_applies)
def embedding(ctx: Ctx, request: pb.EmbeddingRequest, params: EmbeddingParams) -> Streamed:
    from interp.embedding import embed
    from interp.progress import StepEvent
    from server.dataset_index import DEFAULT_K, base_key, default_batch
    from server.embedding import MAX_THUMBNAILS, CachedMap, maps, render, thumbnails_of

    req = _map_request(ctx, request, params)
    model, module = ctx.model, ctx.module
    views = _views(ctx)
    side = model.spec.input_shape[1]
    batch_size = default_batch(side)
    threads = torch.get_num_threads()

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        def make() -> CachedMap:
            base = base_key(model.weights.sha256, req.dataset.manifest(), model.spec.preprocessing)
            stored = views.store.find(base, req.path, 1)
            if stored is None:  # the features come from the index pass, never from a second extractor

                def progress(p: Any) -> None:
                    on_step(StepEvent(p.images_done, p.total, p.images_per_s, p.elapsed_s, "features"))

                stored, _, _ = views.store.build(
                    module,
                    model_name=model.spec.name,
                    weights_sha256=model.weights.sha256,
                    spec=model.spec.preprocessing,
                    dataset=req.dataset,
                    layers=[req.path],
                    k=DEFAULT_K,
                    batch_size=batch_size,
                    device=ctx.servicer.config.device,
                    on_progress=progress,
                    should_stop=should_stop,
                )
            present = stored.present[: req.points]
            ids = np.flatnonzero(present).astype(np.int64)
            features = np.asarray(stored.features(req.path)[ids], dtype=np.float32)
            emap = embed(
                features,
                req.method,
                req.params or EmbeddingParams(),
                threads=threads,
                on_step=on_step,
                should_stop=should_stop,
            )
            labels = np.asarray(req.dataset.labels(), dtype=np.int64)[ids]
            thumbs = thumbnails_of(req.dataset, model.spec.preprocessing, ids[:MAX_THUMBNAILS])
            title = f"{model.spec.name} {req.path} on {req.dataset.name}: {req.method}, {len(ids):,} points"
            scatter, atlas, tiles, columns = render(emap, labels, tuple(req.dataset.classes), thumbs, title)
            return CachedMap(
                key=req.key,
                emap=emap,
                ids=ids,
                labels=labels,
                classes=tuple(req.dataset.classes),
                index_id=stored.folder,
                thumbnails=thumbs,
                scatter_png=scatter,
                atlas_png=atlas,
                sprite_png=tiles,
                sprite_columns=columns,
            )

        return maps(ctx.servicer).get_or_make(req.key, make, should_stop)

    def finish(result: Any) -> pb.EmbeddingResult:
        cached, reused = result
        emap = cached.emap
        thumbs = cached.thumbnails
        return pb.EmbeddingResult(
            dataset=req.dataset.name,
            layer=req.path,
            method=req.method,
            coordinates=convert.tensor(emap.coordinates),
            image_ids=cached.ids.tolist(),
            labels=cached.labels.tolist(),
            classes=list(cached.classes),
            scatter_png=cached.scatter_png,
            atlas_png=cached.atlas_png,
            thumbnails_png=cached.sprite_png,
            thumbnail_size=int(thumbs.shape[1]) if len(thumbs) else 0,
            thumbnail_columns=cached.sprite_columns,
            thumbnail_count=len(thumbs),
            kl_divergence=emap.kl_divergence,
            explained_variance=emap.pca.explained_variance_ratio.tolist(),
            reused=reused,
            map_id=cached.key[:16],
            index_id=cached.index_id,
            seconds=0.0 if reused else emap.seconds,
            threads=emap.threads if req.method == "tsne" else 0,
            resolved=convert.params_to_proto(
                req.params, pb.EmbeddingParams, only=_embedding_applies(request)
            ) if req.params is not None else pb.EmbeddingParams(),
        )  # fmt: skip

    return Streamed(run, finish)


@handler("PlaceImages", params=EmbeddingParams, applies=_embedding_applies)
def place_images(ctx: Ctx, request: pb.PlaceImagesRequest, params: EmbeddingParams) -> pb.PlaceImagesResponse:
    from interp import dataset_index as di
    from interp.embedding import place, scatter_image
    from server.embedding import MapUnavailable, maps

    req = _map_request(ctx, request, params)
    if not request.images:
        raise BadRequest("at least one image is required", field="images")
    cached = maps(ctx.servicer).get(req.key)
    if cached is None:
        model = ctx.model
        limit = f" --limit {request.limit}" if request.HasField("limit") else ""
        method = "" if req.method == "tsne" else f" --method {req.method}"
        raise MapUnavailable(
            f"no {req.method} map of {req.dataset.name} at {req.path} for {model.spec.name} with these parameters "
            f"is cached on this server; make it first with the same request: Embedding (CLI: interp embed "
            f"{model.spec.name} {req.dataset.name} --layer {request.layer}{method}{limit} -o map.png)"
        )
    inputs = [ctx.input(image, f"images[{i}]") for i, image in enumerate(request.images)]
    x = torch.cat(inputs)
    features = di.query_features(ctx.module, x, req.path).cpu().numpy()
    placement = place(cached.emap, features)
    placed = []
    for i in range(len(inputs)):
        rows = placement.neighbor_ids[i]
        labels = cached.labels[rows]
        known = labels[labels >= 0]
        label = int(np.bincount(known).argmax()) if len(known) else -1
        placed.append(
            pb.PlacedImage(
                x=float(placement.coordinates[i, 0]),
                y=float(placement.coordinates[i, 1]),
                neighbor_ids=cached.ids[rows].tolist(),
                neighbor_labels=labels.tolist(),
                neighbor_distances=placement.neighbor_distances[i].tolist(),
                label=label,
                label_name=cached.classes[label] if 0 <= label < len(cached.classes) else "",
                input=ctx.input_message(inputs[i]),
            )
        )
    picture = scatter_image(
        cached.emap.coordinates,
        cached.labels,
        cached.classes,
        title=f"{len(inputs)} placed image(s): black rings",
        marks=placement.coordinates,
    )
    return pb.PlaceImagesResponse(
        dataset=req.dataset.name,
        layer=req.path,
        method=req.method,
        map_id=cached.key[:16],
        placed=placed,
        scatter_png=rendering.encode_png(picture),
        resolved=convert.params_to_proto(req.params, pb.EmbeddingParams, only=_embedding_applies(request))
        if req.params is not None
        else pb.EmbeddingParams(),
    )
