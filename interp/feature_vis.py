"""Filter-maximizing inputs (activation maximization; Erhan et al. 2009, Olah et al. 2017).

An input image is optimized with Adam so that one channel of a layer responds as strongly as
possible: either the channel's spatial mean ("channel") or its centre unit ("neuron"). Several
channels are optimized together as one batch (one image per channel). The image is
parameterized so that optimization favours natural-looking results:

- ``"fourier"`` (RGB default, Lucid/Lucent): a Fourier spectrum scaled by 1/f, mapped to
  colour with Lucid's decorrelating colour matrix, squashed to [0, 1] by a sigmoid;
- ``"pixel"`` (1-channel default): sigmoid of per-pixel logits initialized from N(0, 1).

Each step sees a randomly transformed copy (pad, jitter, scale, rotate, jitter; Lucid's
``standard_transforms`` with pixel amounts scaled to the image size; images of at most 64 px
skip the resampling ones, scale and rotate), which favours features that are robust rather than
adversarial. The forward pass stops at the objective's layer. Optionally each channel starts
from several random inits in the same batch and the best is kept (``restarts``; LeNet: 2).

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
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import get_layer, run_until
from interp.progress import OnStep, ShouldStop, StepReporter, default_preview_every, release_on_cancel
from interp.validate import check_int, filled

OBJECTIVES = ("channel", "neuron")
PARAMETERIZATIONS = ("fourier", "pixel")

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
SMALL_RESTARTS = 2

REFERENCE_SIZE = 128
"""Image side for which Lucid's transform constants (pad 12, jitter 8 and 4 px) were chosen."""

# Lucid's colour correlation (square root of the ImageNet colour covariance), columns normalized
# so that the largest has unit norm: decorrelated noise maps to natural colour statistics.
_COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
_FOURIER_INIT_STD = 0.01  # Lucid's fft_image sd
_FOURIER_MAGIC = 4.0  # Lucid divides the inverse FFT by 4 before the sigmoid
_PIXEL_INIT_STD = 1.0  # N(0, 1) logits: noise strong enough that few ReLU channels start dead


@dataclass(frozen=True)
class FeatureVisParams:
    """Parameters of :func:`visualize_filter`; ``None`` means "the default for this model".

    Field names match ``interp.v1.VisualizeFilterParams`` (``restarts`` included).
    :func:`resolve` fills the defaults:

    ================ ================== ======================= ==================
    field            ImageNet models    small models (LeNet)    valid range
    ================ ================== ======================= ==================
    objective        "channel"          "channel"               "channel", "neuron"
    steps            512                512                     1 .. 4096
    image_size       128                the input size (28)     16 .. 512
    learning_rate    0.05 (fourier)     0.2 (pixel)             (0, 10]
    seed             0                  0                       0 .. 2**63-1
    parameterization "fourier" (RGB)    "pixel" (1 channel)     "fourier", "pixel"
    transforms       True               True (no scale/rotate)  bool
    preview_every    steps // 16        steps // 16             0 .. 4096 (0: none)
    restarts         1                  2 (1-channel only)      1 .. 16
    ================ ================== ======================= ==================

    The learning rate default follows the parameterization (pixel logits 0.2, Fourier 0.05).
    ``restarts``: each channel is optimized from that many random starts (all in the same batch)
    and the best, by the final activation, is returned. The small-model values are what puts
    every ``relu2`` channel of the trained LeNet above its test-set maximum; 256 steps at lr 0.1
    (the first guess) leaves channel 6 at 0.7-0.9x (docs/methods.md).
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


def resolve(params: FeatureVisParams | None, *, in_channels: int, input_size: int) -> FeatureVisParams:
    """Fill the model-dependent defaults of ``params`` and validate every field.

    Args:
        params: Requested parameters; ``None`` fields take the default for this model.
        in_channels: The model's input channels (1: LeNet, 3: RGB).
        input_size: The model's input side in pixels (28 LeNet, 224 ImageNet models).

    Returns:
        A :class:`FeatureVisParams` with every field set.

    Raises:
        InvalidInput: A field outside its valid range (the message names the range).
    """
    p = params or FeatureVisParams()
    small = input_size <= SMALL_INPUT_SIZE
    parameterization = p.parameterization
    if parameterization is None:
        parameterization = "pixel" if in_channels == 1 else "fourier"
    steps = p.steps if p.steps is not None else (SMALL_STEPS if small else 512)
    resolved = FeatureVisParams(
        objective=p.objective if p.objective is not None else "channel",
        steps=steps,
        image_size=p.image_size if p.image_size is not None else min(input_size, REFERENCE_SIZE),
        learning_rate=(
            p.learning_rate if p.learning_rate is not None else (PIXEL_LR if parameterization == "pixel" else 0.05)
        ),
        seed=p.seed if p.seed is not None else 0,
        parameterization=parameterization,
        transforms=p.transforms if p.transforms is not None else True,
        preview_every=p.preview_every if p.preview_every is not None else default_preview_every(steps),
        restarts=p.restarts if p.restarts is not None else (SMALL_RESTARTS if small and in_channels == 1 else 1),
    )
    _validate(resolved)
    return resolved


def _validate(p: FeatureVisParams) -> None:
    if p.objective not in OBJECTIVES:
        raise InvalidInput(f"objective must be one of {OBJECTIVES}, got {p.objective!r}")
    if p.parameterization not in PARAMETERIZATIONS:
        raise InvalidInput(f"parameterization must be one of {PARAMETERIZATIONS}, got {p.parameterization!r}")
    check_int("steps", p.steps, 1, MAX_STEPS)
    check_int("image_size", p.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    check_int("seed", p.seed, 0, MAX_SEED)
    check_int("preview_every", p.preview_every, 0, MAX_STEPS)
    check_int("restarts", p.restarts, 1, MAX_RESTARTS)
    lr = p.learning_rate
    if not isinstance(lr, int | float) or not math.isfinite(lr) or not 0.0 < lr <= MAX_LEARNING_RATE:
        raise InvalidInput(f"learning_rate must be in (0, {MAX_LEARNING_RATE}], got {lr!r}")
    if not isinstance(p.transforms, bool):
        raise InvalidInput(f"transforms must be a bool, got {p.transforms!r}")



def visualize_filter(
    model: nn.Module,
    layer: str,
    channels: Sequence[int],
    *,
    in_channels: int,
    params: FeatureVisParams | None = None,
    input_size: int | None = None,
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
        on_step: Receives one :class:`~interp.progress.StepEvent` per step; ``objective`` is
            the mean over channels of the objective on that step's transformed images.
        should_stop: Asked once per step; returning True raises ``Cancelled``.

    Returns:
        :class:`FeatureVisResult` with ``(N, in_channels, S, S)`` images in [0, 1].

    Raises:
        InvalidInput: Unknown layer, channel out of range, or a parameter out of range.
        Cancelled: ``should_stop()`` returned True.
    """
    if in_channels < 1:
        raise InvalidInput(f"in_channels must be >= 1, got {in_channels}")
    size = input_size if input_size is not None else (28 if in_channels == 1 else 224)
    resolved = resolve(params, in_channels=in_channels, input_size=size)
    channel_list = [int(c) for c in channels]
    if not 1 <= len(channel_list) <= MAX_CHANNELS:
        raise InvalidInput(f"between 1 and {MAX_CHANNELS} channels are required, got {len(channel_list)}")
    return release_on_cancel(_visualize, model, layer, channel_list, in_channels, resolved, on_step, should_stop)


def _visualize(
    model: nn.Module,
    layer: str,
    channels: list[int],
    in_channels: int,
    p: FeatureVisParams,
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
    # Restarts are stacked restart-major along the batch: image r * n + i is restart r of channel i,
    # so restart 0 is exactly the run without restarts.
    index = torch.tensor(channels * restarts, device=device)

    generator = torch.Generator().manual_seed(filled(p.seed, "seed"))
    kind = filled(p.parameterization, "parameterization")
    image_fn, leaf = _parameterize(kind, n, restarts, in_channels, size, generator, device, dtype)
    spec = _TransformSpec.for_size(size) if p.transforms else None
    optimizer = torch.optim.Adam([leaf], lr=filled(p.learning_rate, "learning_rate"))
    steps = filled(p.steps, "steps")
    reporter = StepReporter(steps, on_step, should_stop, filled(p.preview_every, "preview_every"))

    with torch.enable_grad():
        for _ in range(steps):
            reporter.check()
            images = image_fn()
            x = _random_transform(images, spec, generator) if spec is not None else images
            post, pre = _forward(model, layer, pre_activation_of, x)
            objective = _select(post, index, objective_kind)
            surrogate = objective
            if pre is not None:
                surrogate = torch.where(objective > 0, objective, _select(pre, index, objective_kind))
            optimizer.zero_grad(set_to_none=True)
            (-surrogate.sum()).backward()
            optimizer.step()
            score = objective.detach()
            preview = functools.partial(_best, images, score, n)
            reporter.report(float(score.mean()), "", preview)

    with torch.no_grad():
        final = image_fn()
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


def _select(activation: Tensor, index: Tensor, objective: str) -> Tensor:
    """``(N, K, ...)`` activation -> ``(N,)``: image i's channel ``index[i]``, spatial mean or centre unit."""
    picked = activation[torch.arange(activation.shape[0], device=activation.device), index]
    if picked.dim() == 1:
        return picked
    if objective == "channel":
        return picked.flatten(1).mean(1)
    centre: tuple[slice | int, ...] = (slice(None), *(s // 2 for s in picked.shape[1:]))
    return picked[centre]


def _parameterize(
    kind: str,
    n: int,
    restarts: int,
    channels: int,
    size: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Callable[[], Tensor], Tensor]:
    """Return ``(images_fn, leaf)``: ``images_fn()`` maps the leaf to ``(restarts * n, C, S, S)`` in [0, 1].

    The initial values are drawn restart by restart, so restart 0 starts exactly where a run
    without restarts would.
    """

    def draw(*shape: int, std: float) -> Tensor:
        parts = [torch.randn(n, *shape, generator=generator) for _ in range(restarts)]
        leaf = (torch.cat(parts) * std).to(device, dtype)
        return leaf.requires_grad_(True)

    decorrelate = _color_matrix(device, dtype) if channels == 3 else None

    def to_valid(raw: Tensor) -> Tensor:
        if decorrelate is not None:
            raw = torch.einsum("nchw,dc->ndhw", raw, decorrelate)
        return torch.sigmoid(raw)

    if kind == "pixel":
        leaf = draw(channels, size, size, std=_PIXEL_INIT_STD)
        return (lambda: to_valid(leaf)), leaf

    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    # 1/f scaling: every frequency band starts with equal energy in the image.
    scale = (1.0 / torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size)).to(device, dtype)[..., None]
    leaf = draw(channels, size, size // 2 + 1, 2, std=_FOURIER_INIT_STD)

    def images() -> Tensor:
        spectrum = torch.view_as_complex((scale * leaf).contiguous())
        raw = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho") / _FOURIER_MAGIC
        return to_valid(raw)

    return images, leaf


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


def _random_transform(x: Tensor, spec: _TransformSpec, generator: torch.Generator) -> Tensor:
    """One random draw of the transform stack, shared by the batch; differentiable in ``x``."""
    if spec.pad > 0:
        x = F.pad(x, (spec.pad,) * 4, mode="constant", value=spec.pad_value)
    x = _jitter(x, spec.jitter, generator)
    if spec.scale > 0 or spec.angle_deg > 0:
        u = torch.rand(2, generator=generator, dtype=torch.float64)
        scale = 1.0 + (2.0 * float(u[0]) - 1.0) * spec.scale
        angle = math.radians((2.0 * float(u[1]) - 1.0) * spec.angle_deg)
        x = _scale_rotate(x, scale, angle)
    return _jitter(x, spec.jitter_after, generator)


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
