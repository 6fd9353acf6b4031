"""Feature visualization's parameters: the defaults per kind of model, the two presets
(``"none"``, ``"naturalness"``) and their regularizer values, and the checks
(:func:`resolve`). The method itself is :mod:`interp.synthesis.feature_vis`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from interp.errors import InvalidInput, echoed
from interp.progress import default_preview_every
from interp.synthesis.transforms import REFERENCE_SIZE, SMALL_INPUT_SIZE, TransformSpec
from interp.validate import INT64_MAX, check_float, check_int, filled

OBJECTIVES = ("channel", "neuron")
PARAMETERIZATIONS = ("fourier", "pixel")
PRESETS = ("none", "naturalness")

MAX_STEPS = 4096
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 512
MAX_CHANNELS = 512
MAX_LEARNING_RATE = 10.0
MAX_RESTARTS = 16
MAX_BLUR_SIGMA = 16.0

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


OFF = Naturalness(0.0, 0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)  # every regularizer off: what the presets change


# Values of the "naturalness" preset. Small models (LeNet, 28 px): chosen on the trained LeNet's
# fc3 class images against an independently trained judge CNN (benchmarks/eval_naturalness.py,
# whose sweep switches each one off in turn). RGB models: Yosinski et al.'s (2015) decay and
# blur on top of Lucid's transforms; not measured against a judge here.
NATURALNESS_SMALL = replace(
    OFF, l2_decay=0.02, blur_every=4, blur_sigma=1.0, blur_sigma_end=0.5, jitter=2, scale_range=0.1, rotate_degrees=10.0
)
NATURALNESS_RGB = replace(NATURALNESS_SMALL, l2_decay=0.0001, blur_sigma_end=0.0, jitter=8)  # the rest as small
_REGULARIZERS = tuple(f.name for f in fields(Naturalness))


@dataclass(frozen=True)
class FeatureVisParams:
    """Parameters of :func:`~interp.synthesis.feature_vis.visualize_filter`; ``None``: the model's default.

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
      :func:`~interp.synthesis.feature_vis.visualize_filter` (``mean_image``).
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
            and the regularizers stay ``None`` unless given, and
            :func:`~interp.synthesis.feature_vis.visualize_filter`, which probes the layer, fills them.

    Returns:
        A :class:`FeatureVisParams` with every field set (but see ``dense``).

    Raises:
        InvalidInput: A field outside its valid range (the message names the range).
    """
    p = params or FeatureVisParams()
    small = input_size <= SMALL_INPUT_SIZE
    preset = p.preset if p.preset is not None else (None if dense is None else "naturalness" if dense else "none")
    if preset is not None and preset not in PRESETS:
        raise InvalidInput(f"preset must be one of {PRESETS}, got {echoed(preset)}", param="preset")
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
    lucid = TransformSpec.for_size(image_size)
    return replace(OFF, jitter=lucid.jitter, scale_range=lucid.scale, rotate_degrees=lucid.angle_deg)


def _validate(p: FeatureVisParams) -> None:
    if p.objective not in OBJECTIVES:
        raise InvalidInput(f"objective must be one of {OBJECTIVES}, got {echoed(p.objective)}", param="objective")
    if p.parameterization is not None and p.parameterization not in PARAMETERIZATIONS:
        raise InvalidInput(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {echoed(p.parameterization)}",
            param="parameterization",
        )
    if p.preset is not None and p.preset not in PRESETS:
        raise InvalidInput(f"preset must be one of {PRESETS}, got {echoed(p.preset)}", param="preset")
    check_int("steps", p.steps, 1, MAX_STEPS)
    check_int("image_size", p.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    check_int("seed", p.seed, 0, INT64_MAX)
    check_int("preview_every", p.preview_every, 0, MAX_STEPS)
    check_int("restarts", p.restarts, 1, MAX_RESTARTS)
    lr = p.learning_rate
    bad_lr = not isinstance(lr, int | float) or not math.isfinite(lr) or not 0.0 < lr <= MAX_LEARNING_RATE
    if lr is not None and bad_lr:
        raise InvalidInput(f"learning_rate must be in (0, {MAX_LEARNING_RATE}], got {lr!r}", param="learning_rate")
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


def transform_spec(p: FeatureVisParams, *, keep_size: bool, background: float) -> TransformSpec:
    """The transform stack (:mod:`interp.synthesis.transforms`) for resolved params.

    ``keep_size=False`` (preset ``"none"`` on convolution layers, the historical stack): pad
    with grey, jitter, scale/rotate (which changes the side), a second jitter; with the
    default ``jitter`` exactly :meth:`TransformSpec.for_size`, otherwise pad ``1.5 * jitter`` and a second
    jitter of ``jitter / 2`` (Lucid's 12 : 8 : 4).
    ``keep_size=True`` (preset ``"naturalness"``, and fully connected layers with scale or
    rotation, which need the model's input size): pad ``jitter`` with the background, crop back to the
    image size at a random offset (a shift of up to +-``jitter``), then scale and rotate
    about the centre at the same size, filling with the background.
    """
    jitter = int(p.jitter or 0)
    lucid = TransformSpec.for_size(int(p.image_size or REFERENCE_SIZE))
    if keep_size:
        pad, jitter_after = jitter, 0
    elif jitter == lucid.jitter:  # the default: exactly Lucid's stack at this size
        pad, jitter_after = lucid.pad, lucid.jitter_after
    else:
        pad, jitter_after = round(1.5 * jitter), round(0.5 * jitter)
    return TransformSpec(
        pad=pad,
        jitter=jitter,
        scale=float(p.scale_range or 0.0),
        angle_deg=float(p.rotate_degrees or 0.0),
        jitter_after=jitter_after,
        pad_value=background if keep_size else 0.5,
        keep_size=keep_size,
    )
