"""Filter-maximizing inputs (activation maximization; Erhan et al. 2009, Olah et al. 2017).

An input image is optimized with Adam so that one channel of a layer responds as strongly as
possible: either the channel's spatial mean ("channel") or its centre unit ("neuron"). Several
channels are optimized together as one batch (one image per channel). The image is
parameterized so that optimization favours natural-looking results:

- ``"fourier"`` (RGB default, Lucid/Lucent): a Fourier spectrum scaled by 1/f, mapped to
  colour with Lucid's decorrelating colour matrix, squashed to [0, 1] by a sigmoid;
- ``"pixel"`` (1-channel default, except with the naturalness preset below): sigmoid of
  per-pixel logits initialized from N(0, 1).

Each step sees a randomly transformed copy (pad, jitter, scale, rotate, jitter; Lucid's
``standard_transforms`` with pixel amounts scaled to the image size; images of at most 64 px
skip the resampling ones, scale and rotate), which favours features that are robust rather than
adversarial. The forward pass stops at the objective's layer. Optionally each channel starts
from several random inits in the same batch and the best is kept (``restarts``; LeNet: 2).

Two presets (``preset``). ``"none"`` is the plain ascent above: the right answer to "what
maximizes this unit at any cost", which for a class logit is usually an adversarial texture.
``"naturalness"`` adds the image priors that make class visualizations recognizable, each an
explicit parameter with its own default (see :class:`FeatureVisParams`):

- L2 decay towards a reference image (Simonyan et al. 2014, class model visualization);
- Gaussian blur every few steps with a width that decays over the run, and DVT's clipping of
  pixels with a small norm or a small contribution (Yosinski et al. 2015, "Understanding Neural
  Networks Through Deep Visualization", the Deep Visualization Toolbox);
- random jitter, scale and rotation of every step's input (Lucid / Lucent's transformation
  robustness; Mordvintsev et al. 2018, "Differentiable Image Parameterizations");
- optionally a start from the dataset mean image (Simonyan et al.) and a total-variation step.

The regularizers act on the image between optimizer steps (decoupled, like AdamW's weight decay),
in pixel units, so their strength does not depend on the scale of the objective (a LeNet unit and
a VGG logit differ by orders of magnitude). ``"naturalness"`` is the default for units of fully
connected layers (class logits and the layers before them: LeNet ``fc1`` .. ``fc3``, VGG16 /
AlexNet ``classifier.*``), whose objective is a whole-image judgement; ``"none"`` stays the
default for convolution channels.

Dead ReLUs: a post-ReLU channel that is exactly 0 everywhere has no gradient, and a grey or
small-noise start leaves several LeNet ``relu2`` channels stuck there. When the objective layer
is a ReLU, its input (the pre-activation) is captured in the same forward pass, and for every
image whose objective is still 0 the pre-activation objective is maximized instead until the
channel wakes up (docs/methods.md, "Feature visualization", has the measured figures).

Sigmoid layers (``lenet-classic``'s ``sig1`` .. ``sig4``): the redirect stays out of the way. It fires
only when the objective layer is an ``nn.ReLU``; a sigmoid's gradient is never exactly 0, so there
is no dead state to escape, and the same defaults apply unchanged. Measured on the trained
``lenet-classic``, ``sig2``, defaults, seeds 0-2: every channel ends above its test-set maximum
(median ratio 1.16-1.21), but a sigmoid output is bounded by 1, so channels that some test image
already nearly saturates can only gain a little (channel 0: test max 0.99981, optimized 0.99992,
i.e. 2.5x closer to 1). The pre-activation ``conv2`` shows the margin without the bound: 1.09-4.3x
the test-set maximum (benchmarks/eval_lenet_iterative.py --model lenet-classic).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import get_layer, run_until
from interp.progress import OnStep, ShouldStop, StepReporter, release_on_cancel
from interp.synthesis.feature_vis_params import MAX_CHANNELS, FeatureVisParams, resolve, transform_spec
from interp.synthesis.parameterization import parameterize
from interp.synthesis.regularizers import Regularizers
from interp.synthesis.transforms import random_transform
from interp.validate import filled


@dataclass(frozen=True)
class FeatureVisResult:
    """Result of :func:`visualize_filter`.

    Attributes:
        images: ``(N, C, S, S)`` float32 in [0, 1], one image per requested channel, in order.
        activations: ``(N,)`` final objective per channel, measured on the untransformed image.
        params: The resolved parameters (every field set).
    """

    images: Tensor
    activations: Tensor
    params: FeatureVisParams


def visualize_filter(
    model: nn.Module,
    layer: str,
    channels: Sequence[int],
    *,
    in_channels: int,
    params: FeatureVisParams | None = None,
    input_size: int | None = None,
    mean_image: Tensor | None = None,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> FeatureVisResult:
    """Optimize one input image per channel so that the channel of ``layer`` responds maximally.

    Args:
        model: Module taking ``(B, in_channels, H, W)`` pixels in [0, 1]; not modified.
        layer: Module path of the objective's layer (e.g. ``"relu2"``, ``"features.11"``).
        channels: Channel indices of ``layer`` (units for a linear layer); optimized as one batch.
        in_channels: The model's input channels (1 or 3).
        params: See :class:`FeatureVisParams`; resolved with :func:`resolve`.
        input_size: The model's input side, selecting the defaults; ``None``: 28 for
            1-channel models, 224 otherwise.
        mean_image: ``(C, S, S)`` or ``(1, C, S, S)`` in [0, 1], the training set's mean image at
            the image size; required by ``start_from_mean`` and ignored otherwise.
        on_step: Receives one :class:`~interp.progress.StepEvent` per step; ``objective`` is
            the mean over channels of the objective on that step's transformed images.
        should_stop: Asked once per step; returning True raises ``Cancelled``.

    Returns:
        :class:`FeatureVisResult` with ``(N, in_channels, S, S)`` images in [0, 1].

    Raises:
        InvalidInput: Unknown layer, channel out of range, a parameter out of range, or
            ``start_from_mean`` without a ``mean_image`` of the right shape.
        Cancelled: ``should_stop()`` returned True.
    """
    if in_channels < 1:
        raise InvalidInput(f"in_channels must be >= 1, got {in_channels}")
    size = input_size if input_size is not None else (28 if in_channels == 1 else 224)
    resolved = resolve(params, in_channels=in_channels, input_size=size)
    channel_list = [int(c) for c in channels]
    if not 1 <= len(channel_list) <= MAX_CHANNELS:
        raise InvalidInput(f"between 1 and {MAX_CHANNELS} channels are required, got {len(channel_list)}")
    mean = None
    if resolved.start_from_mean:
        mean = _check_mean_image(mean_image, in_channels, filled(resolved.image_size, "image_size"))
    return release_on_cancel(
        _visualize, model, layer, channel_list, in_channels, size, resolved, mean, on_step, should_stop
    )


def _check_mean_image(mean_image: Tensor | None, in_channels: int, size: int) -> Tensor:
    if mean_image is None:
        raise InvalidInput("start_from_mean needs the dataset mean image (mean_image), which was not given")
    expected = (1, in_channels, size, size)
    m = mean_image.unsqueeze(0) if mean_image.dim() == 3 else mean_image
    if tuple(m.shape) != expected:
        raise InvalidInput(f"mean_image must have shape {expected[1:]} or {expected}, got {tuple(mean_image.shape)}")
    if not m.is_floating_point() or not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
        raise InvalidInput("mean_image must be finite floats in [0, 1]")
    return m.detach()


def _visualize(
    model: nn.Module,
    layer: str,
    channels: list[int],
    in_channels: int,
    input_size: int,
    p: FeatureVisParams,
    mean: Tensor | None,
    on_step: OnStep | None,
    should_stop: ShouldStop | None,
) -> FeatureVisResult:
    module = get_layer(model, layer)
    # An in-place ReLU overwrites its input, so its pre-activation cannot be kept.
    pre_activation_of = module if isinstance(module, nn.ReLU) and not module.inplace else None
    device, dtype = _device_dtype(model)
    n, size = len(channels), filled(p.image_size, "image_size")
    restarts, objective_kind = filled(p.restarts, "restarts"), filled(p.objective, "objective")

    grey = torch.full((1, in_channels, size, size), 0.5, device=device, dtype=dtype)
    try:
        with torch.no_grad():
            probe, _ = _forward(model, layer, None, grey)
    except RuntimeError as exc:  # e.g. a linear layer that needs the model's own input size
        raise InvalidInput(f"image_size {size} does not fit the model up to layer {layer!r}: {exc}") from None
    _check_channels(layer, probe, channels)
    # Now that the layer's kind is known, the preset (and the regularizers it sets) resolve.
    p = resolve(p, in_channels=in_channels, input_size=input_size, dense=probe.dim() == 2)
    # Restarts are stacked restart-major along the batch: image r * n + i is restart r of channel i,
    # so restart 0 is exactly the run without restarts.
    index: Tensor | int = torch.tensor(channels * restarts, device=device)
    if len(set(channels)) == 1:  # one channel (with its restarts): a slice, cheaper to differentiate
        index = channels[0]
    ascend = torch.full((n * restarts,), -1.0, device=device, dtype=dtype)

    reference = (
        mean.to(device, dtype)
        if mean is not None
        else torch.full((1, in_channels, 1, 1), 0.0 if in_channels == 1 else 0.5, device=device, dtype=dtype)
    )
    generator = torch.Generator().manual_seed(filled(p.seed, "seed"))
    kind, restarts = filled(p.parameterization, "parameterization"), filled(p.restarts, "restarts")
    image = parameterize(kind, n, restarts, in_channels, size, generator, device, dtype, mean)
    dense = probe.dim() == 2
    background = 0.0 if in_channels == 1 else 0.5
    # A fully connected layer needs the model's input size, which scaling would change.
    keep_size = p.preset == "naturalness" or (dense and bool(p.scale_range or p.rotate_degrees))
    spec = transform_spec(p, keep_size=keep_size, background=background) if p.transforms else None
    regularize = Regularizers(p, reference)
    optimizer = torch.optim.Adam([image.leaf], lr=filled(p.learning_rate, "learning_rate"))
    steps = filled(p.steps, "steps")
    reporter = StepReporter(steps, on_step, should_stop, filled(p.preview_every, "preview_every"))

    with torch.enable_grad():
        for step in range(steps):
            reporter.check()
            images = image.images()
            if regularize.needs_gradient:
                images.retain_grad()
            x = random_transform(images, spec, generator) if spec is not None else images
            post, pre = _forward(model, layer, pre_activation_of, x)
            objective = _select(post, index, objective_kind)
            surrogate = objective
            if pre is not None:
                surrogate = torch.where(objective > 0, objective, _select(pre, index, objective_kind))
            optimizer.zero_grad(set_to_none=True)
            surrogate.backward(ascend)  # the gradient of -sum(surrogate), without the sum's nodes
            optimizer.step()
            if regularize.active(step):
                with torch.no_grad():
                    gradient = images.grad if regularize.needs_gradient else None
                    image.set_images(regularize(image.images(), step, gradient))
            score = objective.detach()
            preview = functools.partial(_best, images, score, n)
            reporter.report(float(score.mean()), "", preview)

    with torch.no_grad():
        final = image.images()
        post, _ = _forward(model, layer, None, final)
        activations = _select(post, index, objective_kind)
        if restarts > 1:
            best = activations.view(restarts, n).argmax(0) * n + torch.arange(n, device=device)
            final, activations = final[best], activations[best]
    return FeatureVisResult(
        images=final.detach().float().cpu(), activations=activations.detach().float().cpu(), params=p
    )


def _best(images: Tensor, score: Tensor, n: int) -> Tensor:
    """``(R * n, ...)`` images -> ``(n, ...)``: for each channel the restart with the highest score."""
    if images.shape[0] == n:
        return images
    best = score.view(-1, n).argmax(0) * n + torch.arange(n, device=score.device)
    return images[best]


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _forward(model: nn.Module, layer: str, relu: nn.Module | None, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """Truncated forward to ``layer``; also returns the input of ``relu`` if given (its pre-activation)."""
    seen: dict[str, Tensor] = {}
    handle = None
    if relu is not None:

        def keep_input(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            seen["pre"] = inputs[0]

        handle = relu.register_forward_pre_hook(keep_input)
    try:
        out = run_until(model, x, [layer])[layer]
    finally:
        if handle is not None:
            handle.remove()
    return out, seen.get("pre")


def _check_channels(layer: str, activation: Tensor, channels: list[int]) -> None:
    if activation.dim() < 2:
        raise InvalidInput(f"layer {layer!r} output has shape {tuple(activation.shape)}; expected (B, C, ...)")
    count = activation.shape[1]
    bad = [c for c in channels if not 0 <= c < count]
    if bad:
        raise InvalidInput(
            f"channels {bad} out of range for layer {layer!r} with {count} channels: valid [0, {count - 1}]"
        )


def _select(activation: Tensor, index: Tensor | int, objective: str) -> Tensor:
    """``(N, K, ...)`` activation -> ``(N,)``: image i's channel ``index[i]`` (every image's channel
    ``index`` when it is an int), spatial mean or centre unit."""
    if isinstance(index, int):
        picked = activation.select(1, index)
    else:
        picked = activation[torch.arange(activation.shape[0], device=activation.device), index]
    if picked.dim() == 1:
        return picked
    if objective == "channel":
        return picked.mean(dim=tuple(range(1, picked.dim())))
    centre: tuple[slice | int, ...] = (slice(None), *(s // 2 for s in picked.shape[1:]))
    return picked[centre]
