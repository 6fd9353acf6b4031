"""Saliency maps: which input pixels the score of one class depends on.

Six methods, all computed by captum (not re-implemented here):

- ``gradient`` (Simonyan et al. 2013): ``dy_c/dx`` (captum ``Saliency``).
- ``gradient_x_input`` (Shrikumar et al. 2016): ``x * dy_c/dx`` (captum ``InputXGradient``).
- ``smoothgrad`` (Smilkov et al. 2017): the gradient averaged over ``samples`` copies of ``x`` with
  Gaussian noise of std ``noise_level * (x.max - x.min)`` (captum ``NoiseTunnel`` over ``Saliency``).
- ``integrated_gradients`` (Sundararajan et al. 2017): black (all-zero) baseline, ``steps`` points
  (captum ``IntegratedGradients``, Gauss-Legendre).
- ``guided_backprop`` (Springenberg et al. 2014): captum ``GuidedBackprop``.
- ``grad_cam`` (Selvaraju et al. 2017): captum ``LayerGradCam`` at ``layer`` with ReLU applied, upsampled
  bilinearly to the input size.

``y_c`` is the class logit (pre-softmax). Every method returns the raw attribution and a map
(B, H, W) >= 0: for the signed methods the map is ``|attribution|`` maxed over colour channels
(Simonyan's convention); for Grad-CAM it is the upsampled, non-negative class activation map.

Thread safety: the shared module is never modified. captum's Saliency, InputXGradient,
NoiseTunnel and IntegratedGradients register no hooks; GuidedBackprop (backward hooks on every
ReLU) and LayerGradCam (a forward hook on the layer) run on an :func:`interp.hooks.structural_copy`
whose hooks no other request sees, and on which in-place ReLUs are made out-of-place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from captum.attr import (
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import Tensor, nn

from interp.errors import Cancelled, InvalidInput
from interp.hooks import capture, get_layer, out_of_place_relus, structural_copy
from interp.rendering import DEFAULT_CLIP_PERCENTILE, DEFAULT_COLORMAP
from interp.validate import INT64_MAX, INT64_MIN, check_batch, check_class_range, check_classes, check_int, check_logits

# The wire's choices (protos.methods.SALIENCY_METHODS, which cannot import this library) are these:
# tests/contract/test_method_table.py keeps the two equal, as it does the attacks'.
METHODS = ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "guided_backprop", "grad_cam")

MAX_SAMPLES = 1000
MAX_STEPS = 1000
MAX_BATCH_SIZE = 1024
MAX_NOISE_LEVEL = 1.0


@dataclass(frozen=True)
class SaliencyParams:
    """Parameters of the saliency methods; the defaults are the reference ones (docs/methods.md).

    Attributes:
        layer: grad_cam: module path of the layer explained; None: :func:`default_gradcam_layer`.
        samples: smoothgrad: number of noisy copies per image (1..1000).
        noise_level: smoothgrad: noise std relative to the image's pixel range ``x.max - x.min``
            (Smilkov et al.'s 10-20 %; captum's own default is an absolute std of 1.0).
        steps: integrated_gradients: points on the path from the baseline (1..1000).
        seed: smoothgrad: seed of the noise (a private generator; the global RNG is untouched).
        batch_size: smoothgrad/integrated_gradients: rows per forward pass, bounding memory (1..1024).
        clip_percentile: rendering of the map (:func:`interp.rendering.heatmap`): values above
            this percentile saturate the colormap. Not read by :func:`saliency` itself.
        colormap: rendering: OpenCV colormap name. Not read by :func:`saliency` itself.
    """

    layer: str | None = None
    samples: int = 50
    noise_level: float = 0.15
    steps: int = 50
    seed: int = 0
    batch_size: int = 16
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE
    colormap: str = DEFAULT_COLORMAP


@dataclass(frozen=True)
class SaliencyResult:
    """What a saliency method computed.

    Attributes:
        method: the method name.
        map: (B, H, W) float32 >= 0 at input resolution.
        attribution: raw captum attribution, float32: (B, C, H, W) signed for the gradient family,
            (B, 1, h, w) >= 0 at the layer's resolution for grad_cam.
        target: (B,) int64 class explained per image.
        probabilities: (B, K) float32 softmax of the model on the clean input.
        params: the parameters actually used (grad_cam's layer resolved).
    """

    method: str
    map: Tensor
    attribution: Tensor
    target: Tensor
    probabilities: Tensor
    params: SaliencyParams


def default_gradcam_layer(model: nn.Module, x: Tensor | None = None) -> str:
    """Module path of the last ``nn.Conv2d``'s rectified maps, Grad-CAM's usual layer (the authors'
    relu5_3 for VGG16): the ReLU right after it (conv, [batch norm,] ReLU, in registration order),
    else the conv itself. With ``x``, one forward checks that the ReLU's last output has the conv's
    shape (a ReLU module the forward also applies elsewhere, say after a linear layer, would not)."""
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    convs = [i for i, (_, module) in enumerate(leaves) if isinstance(module, nn.Conv2d)]
    if not convs:
        raise InvalidInput("grad_cam needs a layer: the model has no Conv2d to default to")
    conv_name = leaves[convs[-1]][0]
    for name, module in leaves[convs[-1] + 1 : convs[-1] + 3]:
        if isinstance(module, nn.ReLU | nn.ReLU6):
            return name if x is None or _same_last_shape(model, x, conv_name, name) else conv_name
        if not isinstance(module, nn.BatchNorm2d):
            break
    return conv_name


def _same_last_shape(model: nn.Module, x: Tensor, first: str, second: str) -> bool:
    """Whether the last outputs of two layers in one whole forward of ``x`` have the same shape
    (hooks on ``model``: give a structural copy of a shared model)."""
    with capture(model, [first, second], stop=False, reduce=lambda _path, out, _inputs: tuple(out.shape)) as shapes:
        with torch.no_grad():
            model(x)
    return shapes.get(first) == shapes.get(second)


def saliency(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    *,
    method: str,
    params: SaliencyParams = SaliencyParams(),  # noqa: B008 - frozen, so a shared default is safe
    should_stop: Callable[[], bool] | None = None,
) -> SaliencyResult:
    """Saliency map of each image in ``x`` for one class per image.

    Args:
        model: classifier, (B, C, H, W) pixels in [0, 1] -> (B, K) logits; not modified.
        x: (B, C, H, W) batch of pixels in [0, 1]; not modified.
        target: (B,) integer class per image; None explains the predicted class.
        method: one of :data:`METHODS`.
        params: see :class:`SaliencyParams`; each method reads only some of them
            (the method table's ``applies`` in ``protos/methods.py`` lists which).
        should_stop: asked before every forward pass of the many-sample methods (smoothgrad,
            integrated_gradients); when it answers true the call raises
            :class:`interp.errors.Cancelled` (a request that is cancelled or past its deadline
            stops within one batch of ``batch_size`` samples).

    Returns:
        :class:`SaliencyResult`.

    Raises:
        InvalidInput: unknown method, bad batch, target out of 0..K-1, parameter out of range,
            unknown grad_cam layer or one without a (B, C, h, w) output.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown saliency method {method!r}; valid methods: {', '.join(METHODS)}")
    _check_params(params)
    check_batch(x)
    if target is not None:
        check_classes("target", target, x.shape[0])
    x = x.detach().clone()  # captum toggles requires_grad on its input: never on the caller's tensor
    if method == "grad_cam":
        # the shape check's hooks go on a copy: the shared model never carries them
        layer = params.layer if params.layer is not None else default_gradcam_layer(structural_copy(model), x[:1])
        get_layer(model, layer)  # unknown layer -> InvalidInput listing the valid ones
        params = replace(params, layer=layer)
        return _grad_cam(model, x, target, params)
    if method in ("smoothgrad", "integrated_gradients"):
        return _many_sample(_Stoppable(model, should_stop) if should_stop else model, x, target, method, params)
    return _single_pass(model, x, target, method, params)


class _ClassScore(nn.Module):
    """Forward function for captum: the logit of one class per image, shape (B,).

    With ``target=None`` the class is the model's prediction for that very forward pass, so the
    gradient methods need no extra forward to find it. Records the logits of its first call
    (the clean input) and checks the target against the number of classes.
    """

    def __init__(self, model: nn.Module, target: Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.logits: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        check_logits(logits, x.shape[0])
        if self.logits is None:
            self.logits = logits.detach()
            if self.target is not None:
                check_class_range("target", self.target, logits.shape[1])
        target = logits.detach().argmax(dim=1) if self.target is None else self.target.to(logits.device)
        return logits.gather(1, target.view(-1, 1)).squeeze(1)

    def resolved(self) -> tuple[Tensor, Tensor]:
        """(target (B,) int64, probabilities (B, K) float32) of the first call."""
        if self.logits is None:  # pragma: no cover - captum always calls the forward function
            raise RuntimeError("forward function was never called")
        target = self.logits.argmax(dim=1) if self.target is None else self.target
        return target.long(), torch.softmax(self.logits.float(), dim=1)


def _single_pass(
    model: nn.Module, x: Tensor, target: Tensor | None, method: str, params: SaliencyParams
) -> SaliencyResult:
    x.requires_grad_(True)  # a private copy; set here so captum does not warn that it had to
    if method == "guided_backprop":
        score = _ClassScore(out_of_place_relus(structural_copy(model)), target)
        attribution = GuidedBackprop(score).attribute(x)
    else:
        score = _ClassScore(model, target)
        explainer = Saliency(score) if method == "gradient" else InputXGradient(score)
        attribution = explainer.attribute(x, abs=False) if method == "gradient" else explainer.attribute(x)
    resolved_target, probabilities = score.resolved()
    attribution = attribution.detach().float()
    return SaliencyResult(
        method=method,
        map=_signed_map(attribution),
        attribution=attribution,
        target=resolved_target,
        probabilities=probabilities,
        params=params,
    )


def _grad_cam(model: nn.Module, x: Tensor, target: Tensor | None, params: SaliencyParams) -> SaliencyResult:
    x.requires_grad_(True)
    view = structural_copy(model)
    layer_path = params.layer if params.layer is not None else ""
    score = _ClassScore(view, target)
    cam = LayerGradCam(score, get_layer(view, layer_path)).attribute(x, relu_attributions=True)
    if not isinstance(cam, Tensor) or cam.dim() != 4:
        shape = tuple(cam.shape) if isinstance(cam, Tensor) else type(cam).__name__
        raise InvalidInput(
            f"grad_cam needs a layer with a (B, C, h, w) output; "
            f"{layer_path!r} gives attributions of shape {shape}",
            param="layer",
        )
    cam = cam.detach().float()
    upsampled = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    resolved_target, probabilities = score.resolved()
    return SaliencyResult(
        method="grad_cam",
        # Bilinear weights are convex, so the upsampled map stays >= 0 up to rounding.
        map=upsampled[:, 0].clamp_min(0.0),
        attribution=cam,
        target=resolved_target,
        probabilities=probabilities,
        params=params,
    )


def _many_sample(
    model: nn.Module, x: Tensor, target: Tensor | None, method: str, params: SaliencyParams
) -> SaliencyResult:
    """smoothgrad / integrated_gradients: one image at a time so a forward never exceeds batch_size rows."""
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, x.shape[0])
    if target is None:
        target = logits.argmax(dim=1)
    else:
        check_class_range("target", target, logits.shape[1])
    target = target.long()
    parts = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        ti = int(target[i])
        if method == "smoothgrad":
            # The noise of image i depends only on (seed, image i): a batch gives the same maps as
            # the images sent one by one.
            generator = torch.Generator(device=x.device).manual_seed(params.seed)
            sigma = params.noise_level * float(xi.max() - xi.min())
            attr = _SeededNoiseTunnel(Saliency(model), generator).attribute(
                xi,
                nt_type="smoothgrad",
                nt_samples=params.samples,
                nt_samples_batch_size=min(params.batch_size, params.samples),
                stdevs=sigma,
                target=ti,
                abs=False,
            )
        else:
            attr = IntegratedGradients(model).attribute(
                xi,
                baselines=torch.zeros_like(xi),
                target=ti,
                n_steps=params.steps,
                internal_batch_size=params.batch_size,
            )
        parts.append(attr.detach().float())
    attribution = torch.cat(parts)
    return SaliencyResult(
        method=method,
        map=_signed_map(attribution),
        attribution=attribution,
        target=target,
        probabilities=torch.softmax(logits.detach().float(), dim=1),
        params=params,
    )


class _Stoppable(nn.Module):
    """Asks ``should_stop`` before each forward of ``model``: captum's passes become cancellable."""

    def __init__(self, model: nn.Module, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self.model = model
        self._should_stop = should_stop

    def forward(self, x: Tensor) -> Tensor:
        if self._should_stop():
            raise Cancelled("saliency stopped: the request was cancelled or its deadline passed")
        return self.model(x)


class _SeededNoiseTunnel(NoiseTunnel):
    """captum's NoiseTunnel with its noise drawn from a private ``torch.Generator``.

    captum draws the noise with ``torch.normal`` from the process-wide RNG. Seeding that (even
    inside ``torch.random.fork_rng``) is not safe when requests run concurrently: another thread
    can draw from, or reseed, the same global generator mid-run. This override changes only the
    source of randomness; the draw is the same expression, so with a generator seeded like the
    global one it reproduces captum's noise exactly (tested).
    """

    def __init__(self, attribution_method: Saliency, generator: torch.Generator) -> None:
        super().__init__(attribution_method)
        self._generator = generator

    def _add_noise_to_inputs(
        self, nt_samples_partition: int, inputs: tuple[Tensor, ...], stdevs: float | tuple[float, ...]
    ) -> tuple[Tensor, ...]:
        stdevs_ = stdevs if isinstance(stdevs, tuple) else (stdevs,) * len(inputs)
        noisy = []
        for inp, stdev in zip(inputs, stdevs_, strict=True):
            size = (inp.shape[0] * nt_samples_partition, *inp.shape[1:])
            std = torch.tensor(stdev, device=inp.device).repeat(size)
            noise = torch.normal(0, std, generator=self._generator)
            sample = inp.repeat_interleave(nt_samples_partition, dim=0) + noise
            noisy.append(sample.requires_grad_() if self.is_gradient_method else sample)
        return tuple(noisy)


def _signed_map(attribution: Tensor) -> Tensor:
    """(B, C, H, W) signed attribution -> (B, H, W) magnitude, max over channels."""
    return attribution.abs().amax(dim=1)


def _check_params(params: SaliencyParams) -> None:
    if not isinstance(params, SaliencyParams):
        raise InvalidInput(f"params must be a SaliencyParams, got {type(params).__name__}")
    if params.layer is not None and not isinstance(params.layer, str):
        raise InvalidInput(f"layer must be a module path (str) or None, got {params.layer!r}", param="layer")
    check_int("samples", params.samples, 1, MAX_SAMPLES)
    check_int("steps", params.steps, 1, MAX_STEPS)
    check_int("batch_size", params.batch_size, 1, MAX_BATCH_SIZE)
    check_int("seed", params.seed, INT64_MIN, INT64_MAX)
    level = params.noise_level
    if (
        isinstance(level, bool)
        or not isinstance(level, int | float)
        or not math.isfinite(level)
        or not 0.0 <= level <= MAX_NOISE_LEVEL
    ):
        raise InvalidInput(
            f"noise_level must be a finite number in [0, {MAX_NOISE_LEVEL}], got {level!r}", param="noise_level"
        )
