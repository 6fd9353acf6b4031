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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import get_layer, run_until
from interp.progress import OnStep, ShouldStop, StepReporter, default_preview_every, release_on_cancel
from interp.validate import check_float, check_int, filled

OBJECTIVES = ("channel", "neuron")
PARAMETERIZATIONS = ("fourier", "pixel")
PRESETS = ("none", "naturalness")

MAX_STEPS = 4096
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 512
MAX_CHANNELS = 512
MAX_LEARNING_RATE = 10.0
MAX_SEED = 2**63 - 1
MAX_RESTARTS = 16

SMALL_INPUT_SIZE = 64
"""Models whose input side is at most this (LeNet's 28) get the small-image defaults."""

# Small-model (LeNet) defaults, measured on the trained LeNet's conv2 channels: with 256 steps at
# lr 0.1 one slow-rising channel (relu2:6) ends below its test-set maximum; 512 steps at lr 0.2,
# best of 2 restarts, put every channel above it on every seed tried (benchmarks/eval_lenet_iterative.py).
SMALL_STEPS = 512
PIXEL_LR = 0.2
FOURIER_LR = 0.05
# The naturalness regularizers pull every step; on LeNet a larger step keeps every class logit
# above its test-set 99th percentile against them (benchmarks/eval_naturalness.py: Fourier at 0.1
# leaves the Bag logit just below it on 2 of 3 seeds; 0.15 clears it on all three).
NATURALNESS_FOURIER_LR = 0.15
NATURALNESS_PIXEL_LR = 0.4
SMALL_RESTARTS = 2

REFERENCE_SIZE = 128
"""Image side for which Lucid's transform constants (pad 12, jitter 8 and 4 px) were chosen."""

# Lucid's colour correlation (square root of the ImageNet colour covariance), columns normalized
# so that the largest has unit norm: decorrelated noise maps to natural colour statistics.
_COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
_FOURIER_INIT_STD = 0.01  # Lucid's fft_image sd
_FOURIER_MAGIC = 4.0  # Lucid divides the inverse FFT by 4 before the sigmoid
_PIXEL_INIT_STD = 1.0  # N(0, 1) logits: noise strong enough that few ReLU channels start dead
_PIXEL_MEAN_INIT_STD = 0.1  # from the mean image: just enough to tell restarts apart
_WRITE_BACK_EPS = 1e-4  # pixels are clamped to [eps, 1 - eps] before the logit of a write-back
MAX_BLUR_SIGMA = 16.0


@dataclass(frozen=True)
class Naturalness:
    """Regularizer values of one preset for one kind of model (see :class:`FeatureVisParams`)."""

    l2_decay: float
    blur_every: int
    blur_sigma: float
    blur_sigma_end: float
    jitter: int
    scale_range: float
    rotate_degrees: float
    tv_weight: float
    clip_norm_percentile: float
    clip_contribution_percentile: float


# Values of the "naturalness" preset. Small models (LeNet, 28 px): chosen on the trained LeNet's
# fc3 class images against an independently trained judge CNN (benchmarks/eval_naturalness.py,
# whose sweep switches each one off in turn). RGB models: Yosinski et al.'s (2015) decay and
# blur on top of Lucid's transforms; not measured against a judge here.
NATURALNESS_SMALL = Naturalness(
    l2_decay=0.02,
    blur_every=4,
    blur_sigma=1.0,
    blur_sigma_end=0.5,
    jitter=2,
    scale_range=0.1,
    rotate_degrees=10.0,
    tv_weight=0.0,
    clip_norm_percentile=0.0,
    clip_contribution_percentile=0.0,
)
NATURALNESS_RGB = Naturalness(
    l2_decay=0.0001,
    blur_every=4,
    blur_sigma=1.0,
    blur_sigma_end=0.0,
    jitter=8,
    scale_range=0.1,
    rotate_degrees=10.0,
    tv_weight=0.0,
    clip_norm_percentile=0.0,
    clip_contribution_percentile=0.0,
)
_REGULARIZERS = tuple(f.name for f in fields(Naturalness))


@dataclass(frozen=True)
class FeatureVisParams:
    """Parameters of :func:`visualize_filter`; ``None`` means "the default for this model".

    Field names match ``interp.v1.VisualizeFilterParams`` one to one. :func:`resolve` fills the
    defaults:

    ================ ================== ======================= ==================
    field            ImageNet models    small models (LeNet)    valid range
    ================ ================== ======================= ==================
    objective        "channel"          "channel"               "channel", "neuron"
    steps            512                512                     1 .. 4096
    image_size       128                the input size (28)     16 .. 512
    learning_rate    0.05 (fourier)     0.2 (pixel), 0.15       (0, 10]
                                        (naturalness: fourier)
    seed             0                  0                       0 .. 2**63-1
    parameterization "fourier" (RGB)    "pixel"; "fourier" with "fourier", "pixel"
                                        naturalness
    transforms       True               True                    bool
    preview_every    steps // 16        steps // 16             0 .. 4096 (0: none)
    restarts         1                  2 (1-channel only)      1 .. 16
    preset           see below          see below               "none", "naturalness"
    start_from_mean  False              False                   bool
    ================ ================== ======================= ==================

    The learning rate default follows the parameterization (pixel logits 0.2, Fourier 0.05) and,
    on small 1-channel models, the preset: the naturalness regularizers pull back every step, and
    0.15 (Fourier; 0.4 for pixels) keeps the class logits of the trained LeNet above their
    test-set 99th percentile against them. With naturalness, 1-channel models also switch to the
    Fourier parameterization (Lucid's decorrelated 1/f spectrum): the images are smoother and
    less striped, while the second CNN of benchmarks/eval_naturalness.py recognizes pixels and
    Fourier alike (9.0 vs 8.7 of 10 over three seeds).
    ``restarts``: each channel is optimized from that many random starts (all in the same batch)
    and the best, by the final activation, is returned. The small-model values are what puts
    every ``relu2`` channel of the trained LeNet above its test-set maximum; 256 steps at lr 0.1
    (the first guess) leaves channel 6 at 0.7-0.9x (docs/methods.md).

    ``preset`` defaults to ``"naturalness"`` for units of a layer without a spatial layout
    (fully connected: class logits ``fc3`` / ``classifier.6`` and the layers before them) and to
    ``"none"`` for convolution channels. The preset only sets defaults (of the regularizers below
    and, on 1-channel models, of ``parameterization`` and ``learning_rate``); any field given
    explicitly wins. Regularizer defaults:

    ============================ ======== ==================== ============== =========================
    field                        "none"   naturalness, small   naturalness,   valid range
                                          (LeNet)              RGB
    ============================ ======== ==================== ============== =========================
    l2_decay                     0        0.02                 0.0001         [0, 1)
    blur_every                   0 (off)  4                    4              0 .. 4096
    blur_sigma                   0        1.0                  1.0            [0, 16] pixels
    blur_sigma_end               0        0.5                  0.0            [0, 16] pixels
    jitter                       2 / 8*   2                    8              0 .. image_size // 4
    scale_range                  0 / 0.1* 0.1                  0.1            [0, 0.5]
    rotate_degrees               0 / 10*  10                   10             [0, 45]
    tv_weight                    0        0                    0              [0, 0.1]
    clip_norm_percentile         0        0                    0              [0, 100)
    clip_contribution_percentile 0        0                    0              [0, 100)
    ============================ ======== ==================== ============== =========================

    (*) ``"none"`` keeps the historical transforms: Lucid's stack scaled to the image size,
    without scale and rotation at <= 64 px (28 px: jitter 2; 128 px: jitter 8).

    What each does, between two optimizer steps, on the image ``x`` in [0, 1] and a reference
    ``r`` (the dataset mean image with ``start_from_mean``, else the background: 0 for 1-channel
    models, whose datasets show light objects on black, and 0.5 grey for RGB):

    - ``l2_decay`` d: ``x <- r + (1 - d) (x - r)`` every step (Simonyan et al.'s L2 term as a
      decoupled decay, Yosinski et al.'s theta_decay);
    - ``blur_every`` k, ``blur_sigma`` s0, ``blur_sigma_end`` s1: every k steps a Gaussian blur
      whose width goes linearly from s0 to s1 over the run (Yosinski et al.'s theta_b);
    - ``jitter``, ``scale_range``, ``rotate_degrees``: each step's forward sees a copy padded
      by ``jitter``, shifted by up to ``jitter`` pixels, scaled by 1 +- ``scale_range`` and
      rotated by +- ``rotate_degrees``, then shifted by up to ``jitter // 2`` (Lucid's
      ``standard_transforms``); ``transforms=False`` switches all of them off;
    - ``tv_weight`` w: a step of w pixels down the gradient of the anisotropic total variation
      (Mahendran & Vedaldi 2015) every step;
    - ``clip_norm_percentile`` p: pixels whose ``|x - r|`` (over colour channels) is below the
      p-th percentile of the image are set to ``r`` (Yosinski et al.'s theta_n_pct);
    - ``clip_contribution_percentile`` p: likewise for the pixel's contribution to the objective,
      ``|sum_c (x - r) * d objective / dx|`` (Yosinski et al.'s theta_c_pct);
    - ``start_from_mean``: the optimization starts from the dataset mean image (plus the
      parameterization's small init noise) instead of noise; the caller passes the mean image to
      :func:`visualize_filter` (``mean_image``).
    """

    objective: str | None = None
    steps: int | None = None
    image_size: int | None = None
    learning_rate: float | None = None
    seed: int | None = None
    parameterization: str | None = None
    transforms: bool | None = None
    preview_every: int | None = None
    restarts: int | None = None
    preset: str | None = None
    l2_decay: float | None = None
    blur_every: int | None = None
    blur_sigma: float | None = None
    blur_sigma_end: float | None = None
    jitter: int | None = None
    scale_range: float | None = None
    rotate_degrees: float | None = None
    tv_weight: float | None = None
    clip_norm_percentile: float | None = None
    clip_contribution_percentile: float | None = None
    start_from_mean: bool | None = None


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


def resolve(
    params: FeatureVisParams | None, *, in_channels: int, input_size: int, dense: bool | None = None
) -> FeatureVisParams:
    """Fill the model-dependent defaults of ``params`` and validate every field.

    Args:
        params: Requested parameters; ``None`` fields take the default for this model.
        in_channels: The model's input channels (1: LeNet, 3: RGB).
        input_size: The model's input side in pixels (28 LeNet, 224 ImageNet models).
        dense: Whether the objective's layer is fully connected (output ``(B, K)``, no spatial
            layout), which selects the ``preset`` default. ``None`` (not known yet): ``preset``
            and the regularizers stay ``None`` unless given, and :func:`visualize_filter`, which
            probes the layer, fills them.

    Returns:
        A :class:`FeatureVisParams` with every field set (but see ``dense``).

    Raises:
        InvalidInput: A field outside its valid range (the message names the range).
    """
    p = params or FeatureVisParams()
    small = input_size <= SMALL_INPUT_SIZE
    preset = p.preset if p.preset is not None else (None if dense is None else "naturalness" if dense else "none")
    if preset is not None and preset not in PRESETS:
        raise InvalidInput(f"preset must be one of {PRESETS}, got {preset!r}")
    parameterization = p.parameterization
    if parameterization is None and (in_channels != 1 or preset is not None):
        # 1 channel: sigmoid pixels for the plain ascent, Fourier (1/f) for naturalness.
        parameterization = "fourier" if in_channels != 1 or preset == "naturalness" else "pixel"
    steps = p.steps if p.steps is not None else (SMALL_STEPS if small else 512)
    image_size = p.image_size if p.image_size is not None else min(input_size, REFERENCE_SIZE)
    learning_rate = p.learning_rate
    if learning_rate is None and parameterization is not None:
        learning_rate = _default_learning_rate(parameterization, preset, small=small and in_channels == 1)
    resolved = FeatureVisParams(
        objective=p.objective if p.objective is not None else "channel",
        steps=steps,
        image_size=image_size,
        learning_rate=learning_rate,
        seed=p.seed if p.seed is not None else 0,
        parameterization=parameterization,
        transforms=p.transforms if p.transforms is not None else True,
        preview_every=p.preview_every if p.preview_every is not None else default_preview_every(steps),
        restarts=p.restarts if p.restarts is not None else (SMALL_RESTARTS if small and in_channels == 1 else 1),
        start_from_mean=p.start_from_mean if p.start_from_mean is not None else False,
        preset=preset,
        **{name: getattr(p, name) for name in _REGULARIZERS},
    )
    if preset is not None:
        defaults = preset_defaults(preset, in_channels=in_channels, image_size=image_size)
        filled = {
            name: getattr(p, name) if getattr(p, name) is not None else getattr(defaults, name)
            for name in _REGULARIZERS
        }
        resolved = replace(resolved, **filled)
    _validate(resolved)
    return resolved


def _default_learning_rate(parameterization: str, preset: str | None, *, small: bool) -> float:
    """Adam's step: pixel logits 0.2, Fourier 0.05; larger under the naturalness priors on LeNet."""
    if preset == "naturalness" and small:
        return NATURALNESS_FOURIER_LR if parameterization == "fourier" else NATURALNESS_PIXEL_LR
    return PIXEL_LR if parameterization == "pixel" else FOURIER_LR


def preset_defaults(preset: str, *, in_channels: int, image_size: int) -> Naturalness:
    """The regularizer values ``preset`` stands for at this image size (see :class:`FeatureVisParams`)."""
    if preset == "naturalness":
        chosen = NATURALNESS_SMALL if in_channels == 1 and image_size <= SMALL_INPUT_SIZE else NATURALNESS_RGB
        return replace(chosen, jitter=min(chosen.jitter, image_size // 4))
    lucid = _TransformSpec.for_size(image_size)
    return Naturalness(
        l2_decay=0.0,
        blur_every=0,
        blur_sigma=0.0,
        blur_sigma_end=0.0,
        jitter=lucid.jitter,
        scale_range=lucid.scale,
        rotate_degrees=lucid.angle_deg,
        tv_weight=0.0,
        clip_norm_percentile=0.0,
        clip_contribution_percentile=0.0,
    )


def _validate(p: FeatureVisParams) -> None:
    if p.objective not in OBJECTIVES:
        raise InvalidInput(f"objective must be one of {OBJECTIVES}, got {p.objective!r}")
    if p.parameterization is not None and p.parameterization not in PARAMETERIZATIONS:
        raise InvalidInput(f"parameterization must be one of {PARAMETERIZATIONS}, got {p.parameterization!r}")
    if p.preset is not None and p.preset not in PRESETS:
        raise InvalidInput(f"preset must be one of {PRESETS}, got {p.preset!r}")
    check_int("steps", p.steps, 1, MAX_STEPS)
    check_int("image_size", p.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    check_int("seed", p.seed, 0, MAX_SEED)
    check_int("preview_every", p.preview_every, 0, MAX_STEPS)
    check_int("restarts", p.restarts, 1, MAX_RESTARTS)
    lr = p.learning_rate
    bad_lr = not isinstance(lr, int | float) or not math.isfinite(lr) or not 0.0 < lr <= MAX_LEARNING_RATE
    if lr is not None and bad_lr:
        raise InvalidInput(f"learning_rate must be in (0, {MAX_LEARNING_RATE}], got {lr!r}")
    for name in ("transforms", "start_from_mean"):
        if not isinstance(getattr(p, name), bool):
            raise InvalidInput(f"{name} must be a bool, got {getattr(p, name)!r}")
    checks: dict[str, Callable[[str, object], object]] = {
        "l2_decay": lambda n, v: _check_below(n, v, 1.0),
        "blur_every": lambda n, v: check_int(n, v, 0, MAX_STEPS),
        "blur_sigma": lambda n, v: check_float(n, v, 0.0, MAX_BLUR_SIGMA),
        "blur_sigma_end": lambda n, v: check_float(n, v, 0.0, MAX_BLUR_SIGMA),
        "jitter": lambda n, v: check_int(n, v, 0, filled(p.image_size, "image_size") // 4),
        "scale_range": lambda n, v: check_float(n, v, 0.0, 0.5),
        "rotate_degrees": lambda n, v: check_float(n, v, 0.0, 45.0),
        "tv_weight": lambda n, v: check_float(n, v, 0.0, 0.1),
        "clip_norm_percentile": lambda n, v: _check_below(n, v, 100.0),
        "clip_contribution_percentile": lambda n, v: _check_below(n, v, 100.0),
    }
    for name, check in checks.items():
        value = getattr(p, name)
        if value is not None:
            check(name, value)


def _check_below(name: str, value: object, hi: float) -> None:
    """A finite number in [0, hi)."""
    check_float(name, value, 0.0, hi)
    if value == hi:
        raise InvalidInput(f"{name} must be a finite number in [0, {hi}), got {value!r}")


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
    image = _parameterize(kind, n, restarts, in_channels, size, generator, device, dtype, mean)
    dense = probe.dim() == 2
    background = 0.0 if in_channels == 1 else 0.5
    # A fully connected layer needs the model's input size, which scaling would change.
    keep_size = p.preset == "naturalness" or (dense and bool(p.scale_range or p.rotate_degrees))
    spec = _TransformSpec.from_params(p, keep_size=keep_size, background=background) if p.transforms else None
    regularize = _Regularizers(p, reference)
    optimizer = torch.optim.Adam([image.leaf], lr=filled(p.learning_rate, "learning_rate"))
    steps = filled(p.steps, "steps")
    reporter = StepReporter(steps, on_step, should_stop, filled(p.preview_every, "preview_every"))

    with torch.enable_grad():
        for step in range(steps):
            reporter.check()
            images = image.images()
            if regularize.needs_gradient:
                images.retain_grad()
            x = _random_transform(images, spec, generator) if spec is not None else images
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


class _Regularizers:
    """The image-space regularizers applied between optimizer steps (see :class:`FeatureVisParams`)."""

    def __init__(self, p: FeatureVisParams, reference: Tensor) -> None:
        self.p = p
        self.reference = reference
        self.needs_gradient = bool(p.clip_contribution_percentile)

    def active(self, step: int) -> bool:
        p = self.p
        return bool(
            p.l2_decay or p.tv_weight or p.clip_norm_percentile or p.clip_contribution_percentile or self._blurs(step)
        )

    def _blurs(self, step: int) -> bool:
        p = self.p
        every = filled(p.blur_every, "blur_every")
        return bool(every) and (step + 1) % every == 0 and self.sigma(step) > 0

    def sigma(self, step: int) -> float:
        """Blur width at ``step``: linear from ``blur_sigma`` to ``blur_sigma_end`` over the run."""
        p = self.p
        steps = filled(p.steps, "steps")
        start, end = filled(p.blur_sigma, "blur_sigma"), filled(p.blur_sigma_end, "blur_sigma_end")
        t = step / (steps - 1) if steps > 1 else 1.0
        return start + (end - start) * t

    def __call__(self, x: Tensor, step: int, grad: Tensor | None) -> Tensor:
        p, r = self.p, self.reference
        if p.l2_decay:
            x = r + (1.0 - p.l2_decay) * (x - r)
        if p.tv_weight:
            x = x - p.tv_weight * _total_variation_gradient(x)
        if self._blurs(step):
            x = gaussian_blur(x, self.sigma(step))
        if p.clip_norm_percentile:
            x = _clip_below_percentile(x, r, (x - r).norm(dim=1), p.clip_norm_percentile)
        if p.clip_contribution_percentile and grad is not None:
            contribution = ((x - r) * grad).sum(1).abs()
            x = _clip_below_percentile(x, r, contribution, p.clip_contribution_percentile)
        return x.clamp(0.0, 1.0)


def _clip_below_percentile(x: Tensor, reference: Tensor, score: Tensor, percentile: float) -> Tensor:
    """Set the pixels whose ``score`` ``(N, H, W)`` is below the image's percentile to ``reference``."""
    threshold = torch.quantile(score.flatten(1), percentile / 100.0, dim=1)
    keep = (score >= threshold[:, None, None]).unsqueeze(1)
    return torch.where(keep, x, reference.expand_as(x))


def _total_variation_gradient(x: Tensor) -> Tensor:
    """Gradient of the anisotropic total variation sum |x[i+1] - x[i]| over both axes; entries in [-4, 4]."""
    dy = torch.sign(x[..., 1:, :] - x[..., :-1, :])
    dx = torch.sign(x[..., :, 1:] - x[..., :, :-1])
    g = torch.zeros_like(x)
    g[..., 1:, :] += dy
    g[..., :-1, :] -= dy
    g[..., :, 1:] += dx
    g[..., :, :-1] -= dx
    return g


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with width ``sigma`` pixels, reflect-padded borders."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3.0 * sigma))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(F.conv2d(padded, horizontal, groups=c), vertical, groups=c)


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


class _Image:
    """A batch of images as a function of one optimized leaf, with the inverse for write-back.

    ``images()`` maps the leaf to ``(restarts * n, C, S, S)`` in [0, 1]; ``set_images(x)`` sets
    the leaf so that ``images()`` returns ``x`` (up to the sigmoid's clamp at 1e-4 / 1 - 1e-4),
    which is how the image-space regularizers act on either parameterization.
    """

    def __init__(
        self,
        kind: str,
        leaf: Tensor,
        size: int,
        decorrelate: Tensor | None,
        scale: Tensor | None,
    ) -> None:
        self.kind, self.leaf, self.size = kind, leaf, size
        self.decorrelate, self.scale = decorrelate, scale

    def images(self) -> Tensor:
        raw = self.leaf
        if self.kind == "fourier":
            spectrum = torch.view_as_complex((self._scale() * raw).contiguous())
            raw = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / _FOURIER_MAGIC
        if self.decorrelate is not None:
            raw = torch.einsum("nchw,dc->ndhw", raw, self.decorrelate)
        return torch.sigmoid(raw)

    def set_images(self, x: Tensor) -> None:
        self.leaf.data.copy_(self.raw_for(x))

    def raw_for(self, x: Tensor) -> Tensor:
        """The leaf value whose images are ``x``."""
        raw = torch.logit(x.clamp(_WRITE_BACK_EPS, 1.0 - _WRITE_BACK_EPS))
        if self.decorrelate is not None:
            raw = torch.einsum("nchw,dc->ndhw", raw, torch.linalg.inv(self.decorrelate))
        if self.kind == "pixel":
            return raw
        spectrum = torch.fft.rfft2(raw * _FOURIER_MAGIC, norm="ortho")
        return torch.view_as_real(spectrum) / self._scale()

    def _scale(self) -> Tensor:
        if self.scale is None:
            raise TypeError("a Fourier parameterization needs its spectrum scale")
        return self.scale


def _parameterize(
    kind: str,
    n: int,
    restarts: int,
    channels: int,
    size: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
    start: Tensor | None = None,
) -> _Image:
    """The optimized image batch of ``restarts * n`` images.

    The initial values are drawn restart by restart, so restart 0 starts exactly where a run
    without restarts would. With ``start`` ``(1, C, S, S)`` (the mean image), every image starts
    there plus the parameterization's init noise (pixel: logits N(0, 0.1); Fourier: Lucid's).
    """

    def draw(*shape: int, std: float) -> Tensor:
        parts = [torch.randn(n, *shape, generator=generator) for _ in range(restarts)]
        return (torch.cat(parts) * std).to(device, dtype)

    decorrelate = _color_matrix(device, dtype) if channels == 3 else None
    if kind == "pixel":
        image = _Image(kind, torch.empty(0), size, decorrelate, None)
        noise = draw(channels, size, size, std=_PIXEL_INIT_STD if start is None else _PIXEL_MEAN_INIT_STD)
    else:
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        # 1/f scaling: every frequency band starts with equal energy in the image.
        scale = (1.0 / torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size)).to(device, dtype)[..., None]
        image = _Image(kind, torch.empty(0), size, decorrelate, scale)
        noise = draw(channels, size, size // 2 + 1, 2, std=_FOURIER_INIT_STD)
    leaf = noise if start is None else image.raw_for(start.expand(len(noise), -1, -1, -1)) + noise
    image.leaf = leaf.detach().requires_grad_(True)
    return image


def _color_matrix(device: torch.device, dtype: torch.dtype) -> Tensor:
    m = torch.tensor(_COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    m = m / m.norm(dim=0).max()
    return m.to(device, dtype)


@dataclass(frozen=True)
class _TransformSpec:
    """Lucid's standard transforms (pad 12 with 0.5, jitter 8, scale 0.9-1.1, rotate +-10 deg, jitter 4)."""

    pad: int = 12
    jitter: int = 8
    scale: float = 0.1
    angle_deg: float = 10.0
    jitter_after: int = 4
    pad_value: float = 0.5
    keep_size: bool = False

    @classmethod
    def for_size(cls, size: int) -> _TransformSpec:
        """Pixel amounts scaled by ``size / 128`` (28 px: pad 3, jitter 2 and 1).

        Images of at most :data:`SMALL_INPUT_SIZE` pixels skip the random scale and rotation:
        bilinear resampling of a 28-px image blurs it at the scale of LeNet's 5x5 kernels, and
        optimizing for blur-robustness costs the untransformed image its activation (trained
        LeNet, ``relu2``: see benchmarks/eval_lenet_iterative.py and the module docstring).
        """
        base = cls()
        f = size / REFERENCE_SIZE
        resample = size > SMALL_INPUT_SIZE
        return replace(
            base,
            pad=round(base.pad * f),
            jitter=round(base.jitter * f),
            jitter_after=round(base.jitter_after * f),
            scale=base.scale if resample else 0.0,
            angle_deg=base.angle_deg if resample else 0.0,
        )

    @classmethod
    def from_params(cls, p: FeatureVisParams, *, keep_size: bool, background: float) -> _TransformSpec:
        """The stack for resolved params.

        ``keep_size=False`` (preset ``"none"`` on convolution layers, the historical stack): pad
        with grey, jitter, scale/rotate (which changes the side), a second jitter; with the
        default ``jitter`` exactly :meth:`for_size`, otherwise pad ``1.5 * jitter`` and a second
        jitter of ``jitter / 2`` (Lucid's 12 : 8 : 4).
        ``keep_size=True`` (preset ``"naturalness"``, and fully connected layers with scale or
        rotation, which need the model's input size): pad ``jitter`` with the background, crop back to the
        image size at a random offset (a shift of up to +-``jitter``), then scale and rotate
        about the centre at the same size, filling with the background.
        """
        jitter = int(p.jitter or 0)
        lucid = cls.for_size(int(p.image_size or REFERENCE_SIZE))
        if keep_size:
            pad, jitter_after = jitter, 0
        elif jitter == lucid.jitter:  # the default: exactly Lucid's stack at this size
            pad, jitter_after = lucid.pad, lucid.jitter_after
        else:
            pad, jitter_after = round(1.5 * jitter), round(0.5 * jitter)
        return cls(
            pad=pad,
            jitter=jitter,
            scale=float(p.scale_range or 0.0),
            angle_deg=float(p.rotate_degrees or 0.0),
            jitter_after=jitter_after,
            pad_value=background if keep_size else 0.5,
            keep_size=keep_size,
        )


def _random_transform(x: Tensor, spec: _TransformSpec, generator: torch.Generator) -> Tensor:
    """One random draw of the transform stack, shared by the batch; differentiable in ``x``."""
    if spec.keep_size:
        return _random_transform_same_size(x, spec, generator)
    if spec.pad > 0:
        x = F.pad(x, (spec.pad,) * 4, mode="constant", value=spec.pad_value)
    x = _jitter(x, spec.jitter, generator)
    if spec.scale > 0 or spec.angle_deg > 0:
        u = torch.rand(2, generator=generator, dtype=torch.float64)
        scale = 1.0 + (2.0 * float(u[0]) - 1.0) * spec.scale
        angle = math.radians((2.0 * float(u[1]) - 1.0) * spec.angle_deg)
        x = _scale_rotate(x, scale, angle)
    return _jitter(x, spec.jitter_after, generator)


def _random_transform_same_size(x: Tensor, spec: _TransformSpec, generator: torch.Generator) -> Tensor:
    """Shift by up to +-``spec.jitter`` pixels, then scale and rotate about the centre; same side out."""
    if spec.jitter > 0:
        h, w = x.shape[-2:]
        x = F.pad(x, (spec.jitter,) * 4, mode="constant", value=spec.pad_value)
        dy, dx = (int(v) for v in torch.randint(0, 2 * spec.jitter + 1, (2,), generator=generator))
        x = x[..., dy : dy + h, dx : dx + w]
    if spec.scale > 0 or spec.angle_deg > 0:
        u = torch.rand(2, generator=generator, dtype=torch.float64)
        scale = 1.0 + (2.0 * float(u[0]) - 1.0) * spec.scale
        angle = math.radians((2.0 * float(u[1]) - 1.0) * spec.angle_deg)
        n, c, h, w = x.shape
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], device=x.device, dtype=x.dtype).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        x = spec.pad_value + F.grid_sample(
            x - spec.pad_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return x


def _jitter(x: Tensor, amount: int, generator: torch.Generator) -> Tensor:
    """Random crop losing ``amount`` pixels per side pair: offsets uniform in [0, amount]."""
    if amount <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(0, amount + 1, (2,), generator=generator))
    h, w = x.shape[-2:]
    return x[..., dy : dy + h - amount, dx : dx + w - amount]


def _scale_rotate(x: Tensor, scale: float, angle: float) -> Tensor:
    """Resample to ``round(side * scale)`` pixels, rotated by ``angle`` radians about the centre."""
    n, c, h, w = x.shape
    out = (max(1, round(h * scale)), max(1, round(w * scale)))
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], device=x.device, dtype=x.dtype).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, c, *out], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
