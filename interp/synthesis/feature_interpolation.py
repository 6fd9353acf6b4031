"""Deep feature interpolation (Upchurch et al., CVPR 2017; reference code paulu/deepfeatinterp).

An image is edited by moving its deep features along an attribute direction and inverting the
features back to pixels:

1. ``phi(x)``: activations of a few (post-ReLU) layers, flattened and concatenated.
2. Attribute vector ``w = mean phi(positive set) - mean phi(negative set)``, or, to morph one
   image into another, ``w = phi(target) - phi(source)``. Optionally ``w / mean(w^2)`` (the
   reference's "beta" scaling).
3. For each ``alpha``: target features ``phi(source) + alpha * w``; reconstruct
   ``z = argmin 0.5 ||phi(z) - target||^2 + lambda * TV_beta(z)`` with L-BFGS (strong Wolfe line
   search, history 20), starting from the source for the first alpha and from the previous
   alpha's result (fewer iterations) for each next one.

The reference keeps pixels in range with L-BFGS-B box constraints; torch's L-BFGS has none, so
a quadratic penalty on the box violation (weight :data:`BOX_PENALTY`) keeps ``z`` close to
[0, 1] during the optimization, and the result is clamped at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import get_layer, run_until
from interp.progress import OnStep, ShouldStop, StepReporter, default_preview_every, release_on_cancel
from interp.validate import INT64_MAX, check_batch, check_float, check_int, filled

MAX_ITERATIONS = 2000
MAX_ALPHAS = 32
MAX_SET_SIZE = 1000
MAX_ALPHA = 100.0
MAX_TV_WEIGHT = 1e3
MAX_TV_BETA = 4.0
MIN_TV_BETA = 1.0
MAX_LAYERS = 16

BOX_PENALTY = 10.0
"""Weight of ``0.5 * sum(relu(-z)^2 + relu(z - 1)^2)`` in the reconstruction objective."""

LBFGS_HISTORY = 20
DEFAULT_ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class InterpolateFeaturesParams:
    """Parameters of :func:`interpolate_features`; ``None`` means the default.

    Field names match ``interp.v1.InterpolateFeaturesParams``. ``seed`` and ``set_size`` are not
    used here: they describe how the caller draws attribute sets (the server does, for class
    names), and are resolved here so that one object carries every echoed value.

    =================== ======= ==================== =============================================
    field               default valid range          meaning
    =================== ======= ==================== =============================================
    iterations          200     1 .. 2000            L-BFGS iterations for the first alpha
    warm_iterations     100     1 .. 2000            for each next alpha (warm start)
    tv_weight           1e-2    [0, 1000]            lambda of the TV prior
    tv_beta             2       [1, 4]               exponent of the TV prior
    seed                0       0 .. 2**63-1         drawing the class sets
    set_size            100     1 .. 1000            images per class set
    normalize_attribute False   bool                 w / mean(w^2)
    preview_every       total//16  >= 0 (0: none)    iterations between previews
    =================== ======= ==================== =============================================

    ``tv_weight`` weighs two sums, the squared feature error over D entries and TV over C*H*W
    pixels; D / (C*H*W) is about 8 both for LeNet's relu1 + relu2 at 28 px and for VGG's
    relu3_1 + relu4_1 + relu5_1 at 224 px, so one default serves both model families.
    """

    iterations: int | None = None
    warm_iterations: int | None = None
    tv_weight: float | None = None
    tv_beta: float | None = None
    seed: int | None = None
    set_size: int | None = None
    normalize_attribute: bool | None = None
    preview_every: int | None = None


@dataclass(frozen=True)
class AlphaResult:
    """One alpha of :func:`interpolate_features`.

    Attributes:
        alpha: The interpolation coefficient.
        images: ``(B, C, H, W)`` float32 in [0, 1], the reconstruction for each source image.
        feature_error: ``(B,)`` relative error ``||phi(z) - target|| / ||target||`` (clamped z).
    """

    alpha: float
    images: Tensor
    feature_error: Tensor


def resolve(params: InterpolateFeaturesParams | None, *, num_alphas: int = 1) -> InterpolateFeaturesParams:
    """Fill the defaults of ``params`` and validate every field.

    Args:
        params: Requested parameters; ``None`` fields take the default.
        num_alphas: How many alphas the run has (sets the default ``preview_every``).

    Raises:
        InvalidInput: A field outside its valid range (the message names the range).
    """
    p = params or InterpolateFeaturesParams()
    iterations = p.iterations if p.iterations is not None else 200
    warm = p.warm_iterations if p.warm_iterations is not None else 100
    resolved = InterpolateFeaturesParams(
        iterations=iterations,
        warm_iterations=warm,
        tv_weight=p.tv_weight if p.tv_weight is not None else 1e-2,
        tv_beta=p.tv_beta if p.tv_beta is not None else 2.0,
        seed=p.seed if p.seed is not None else 0,
        set_size=p.set_size if p.set_size is not None else 100,
        normalize_attribute=p.normalize_attribute if p.normalize_attribute is not None else False,
        preview_every=(
            p.preview_every
            if p.preview_every is not None
            else default_preview_every(iterations + max(0, num_alphas - 1) * warm)
        ),
    )
    check_int("iterations", resolved.iterations, 1, MAX_ITERATIONS)
    check_int("warm_iterations", resolved.warm_iterations, 1, MAX_ITERATIONS)
    check_int("seed", resolved.seed, 0, INT64_MAX)
    check_int("set_size", resolved.set_size, 1, MAX_SET_SIZE)
    check_int("preview_every", resolved.preview_every, 0, MAX_ITERATIONS * MAX_ALPHAS)
    check_float("tv_weight", resolved.tv_weight, 0.0, MAX_TV_WEIGHT)
    check_float("tv_beta", resolved.tv_beta, MIN_TV_BETA, MAX_TV_BETA)
    if not isinstance(resolved.normalize_attribute, bool):
        raise InvalidInput(
            f"normalize_attribute must be a bool, got {resolved.normalize_attribute!r}", param="normalize_attribute"
        )
    return resolved


def features(model: nn.Module, x: Tensor, layers: Sequence[str]) -> Tensor:
    """``phi(x)``: the activations of ``layers``, flattened and concatenated in the given order.

    One forward pass, stopped at the deepest layer. Differentiable if ``x`` requires grad.

    Args:
        model: Module taking pixels in [0, 1].
        x: ``(B, C, H, W)``.
        layers: Module paths, usually post-ReLU layers (LeNet ``relu1, relu2``: D = 6304).

    Returns:
        ``(B, D)``.
    """
    _check_layers(model, layers)
    acts = run_until(model, x, list(layers))
    return torch.cat([acts[name].flatten(1) for name in layers], dim=1)


def attribute_vector(
    model: nn.Module, positive: Tensor, negative: Tensor, layers: Sequence[str], *, batch_size: int = 64
) -> Tensor:
    """``w = mean phi(positive) - mean phi(negative)`` (Upchurch et al. 2017, eq. 1).

    Args:
        model: Module taking pixels in [0, 1].
        positive: ``(P, C, H, W)`` images with the attribute, in [0, 1].
        negative: ``(Q, C, H, W)`` images without it, in [0, 1].
        layers: Module paths for ``phi``.
        batch_size: Images per forward pass (bounds memory).

    Returns:
        ``(D,)`` float32.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be >= 1, got {batch_size}", param="batch_size")
    check_batch(positive)
    check_batch(negative, channels=positive.shape[1])
    if positive.shape[1:] != negative.shape[1:]:
        raise InvalidInput(
            f"positive and negative sets must share (C, H, W): {tuple(positive.shape)} vs {tuple(negative.shape)}"
        )
    return _mean_features(model, positive, layers, batch_size) - _mean_features(model, negative, layers, batch_size)


def _mean_features(model: nn.Module, x: Tensor, layers: Sequence[str], batch_size: int) -> Tensor:
    if x.shape[0] == 0:
        raise InvalidInput("an attribute set needs at least one image")
    with torch.no_grad():
        parts = [
            features(model, x[start : start + batch_size], layers).double().sum(0)
            for start in range(0, x.shape[0], batch_size)
        ]
    total = sum(parts[1:], parts[0])  # the same left-to-right additions as a running total
    return (total / x.shape[0]).float()


def interpolate_features(
    model: nn.Module,
    source: Tensor,
    layers: Sequence[str],
    *,
    direction: Tensor,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    params: InterpolateFeaturesParams | None = None,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> list[AlphaResult]:
    """Edit ``source`` along ``direction`` in feature space and reconstruct each ``alpha``.

    Args:
        model: Module taking pixels in [0, 1]; not modified.
        source: ``(B, C, H, W)`` pixels in [0, 1]; the B images are reconstructed as one batch.
        layers: Module paths for ``phi`` (see :func:`features`).
        direction: ``w``, ``(D,)`` shared by the batch or ``(B, D)`` per image; for the
            two-image mode pass ``phi(target) - phi(source)``.
        alphas: Interpolation coefficients, processed (and returned) in the given order; each
            warm-starts from the previous one's result.
        params: See :class:`InterpolateFeaturesParams`.
        on_step: One :class:`~interp.progress.StepEvent` per L-BFGS iteration, ``stage``
            ``"alpha <a>"``, ``objective`` the reconstruction loss (mean over the batch).
        should_stop: Asked before every function evaluation; True raises ``Cancelled``.

    Returns:
        One :class:`AlphaResult` per alpha, in the order given.

    Raises:
        InvalidInput: Bad shapes, unknown layers, non-finite alphas, parameters out of range.
        Cancelled: ``should_stop()`` returned True.
    """
    check_batch(source)
    _check_layers(model, layers)
    alpha_list = [float(a) for a in alphas]
    if not 1 <= len(alpha_list) <= MAX_ALPHAS:
        raise InvalidInput(f"between 1 and {MAX_ALPHAS} alphas are required, got {len(alpha_list)}")
    bad = [a for a in alpha_list if not math.isfinite(a) or abs(a) > MAX_ALPHA]
    if bad:
        raise InvalidInput(f"alphas must be finite and within [-{MAX_ALPHA}, {MAX_ALPHA}], got {bad}", param="alphas")
    resolved = resolve(params, num_alphas=len(alpha_list))
    return release_on_cancel(
        _interpolate, model, source, list(layers), direction, alpha_list, resolved, on_step, should_stop
    )


def _check_layers(model: nn.Module, layers: Sequence[str]) -> None:
    if isinstance(layers, str) or not 1 <= len(layers) <= MAX_LAYERS:
        raise InvalidInput(f"layers must be a list of 1 to {MAX_LAYERS} module paths, got {layers!r}", param="layers")
    for name in layers:
        get_layer(model, name)


def _interpolate(
    model: nn.Module,
    source: Tensor,
    layers: list[str],
    direction: Tensor,
    alphas: list[float],
    p: InterpolateFeaturesParams,
    on_step: OnStep | None,
    should_stop: ShouldStop | None,
) -> list[AlphaResult]:
    source = source.detach()
    with torch.no_grad():
        phi_source = features(model, source, layers)
    w = _check_direction(direction, phi_source)
    if p.normalize_attribute:
        w = w / (w * w).mean(dim=-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)

    first, warm = filled(p.iterations, "iterations"), filled(p.warm_iterations, "warm_iterations")
    total = first + (len(alphas) - 1) * warm
    reporter = StepReporter(total, on_step, should_stop, filled(p.preview_every, "preview_every"))
    results = []
    z = source
    planned_end = 0
    for i, alpha in enumerate(alphas):
        iterations = first if i == 0 else warm
        planned_end += iterations
        target = phi_source + alpha * w
        z = _reconstruct(model, layers, z, target, iterations, p, reporter, f"alpha {alpha:g}", planned_end)
        with torch.no_grad():
            image = z.clamp(0.0, 1.0)
            error = (features(model, image, layers) - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-12)
        results.append(AlphaResult(alpha=alpha, images=image.float().cpu(), feature_error=error.float().cpu()))
    return results


def _check_direction(direction: Tensor, phi_source: Tensor) -> Tensor:
    b, d = phi_source.shape
    if not isinstance(direction, Tensor):
        raise InvalidInput(f"direction must be a torch.Tensor, got {type(direction).__name__}")
    if direction.shape not in ((d,), (b, d)):
        raise InvalidInput(f"direction must have shape ({d},) or ({b}, {d}), got {tuple(direction.shape)}")
    if not torch.isfinite(direction).all():
        raise InvalidInput("direction contains NaN or infinite values")
    return direction.detach().to(phi_source.device, phi_source.dtype).expand(b, d)


def total_variation(z: Tensor, beta: float) -> Tensor:
    """``TV_beta(z) = sum_{b,c,i,j} ((z[i+1,j] - z[i,j])^2 + (z[i,j+1] - z[i,j])^2)^(beta/2)``, per image: ``(B,)``.

    Mahendran & Vedaldi 2015's form (as in the DFI reference); the last row and column use the
    differences that exist.
    """
    dy = torch.zeros_like(z)
    dx = torch.zeros_like(z)
    dy[..., :-1, :] = z[..., 1:, :] - z[..., :-1, :]
    dx[..., :, :-1] = z[..., :, 1:] - z[..., :, :-1]
    squared = dy * dy + dx * dx
    if beta == 2.0:
        per_pixel = squared
    else:
        # The +eps keeps the gradient finite where the image is flat (beta < 2).
        per_pixel = (squared + 1e-8).pow(beta / 2.0)
    return per_pixel.flatten(1).sum(1)


def _reconstruct(
    model: nn.Module,
    layers: list[str],
    start: Tensor,
    target: Tensor,
    iterations: int,
    p: InterpolateFeaturesParams,
    reporter: StepReporter,
    stage: str,
    end_step: int,
) -> Tensor:
    """L-BFGS on ``0.5 ||phi(z) - target||^2 + lambda TV_beta(z) + box penalty`` from ``start``.

    One ``optimizer.step`` per iteration (``max_iter=1``; the L-BFGS history persists across
    steps), so cancellation and progress are per iteration. After each step the closure is
    evaluated at the accepted point to report its loss; ``step`` starts by evaluating the same
    point, which a one-entry cache then serves, so no evaluation is wasted. If L-BFGS stops
    moving before ``iterations``, the last event jumps to ``end_step`` (the stage's planned end).
    """
    z = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([z], lr=1.0, max_iter=1, history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe")
    cache: dict[str, Tensor] = {}
    batch = z.shape[0]
    tv_weight, tv_beta = filled(p.tv_weight, "tv_weight"), filled(p.tv_beta, "tv_beta")

    def closure() -> Tensor:
        reporter.check()
        if "z" in cache and torch.equal(cache["z"], z):
            z.grad = cache["grad"].clone()
            return cache["loss"]
        z.grad = None
        with torch.enable_grad():
            phi = features(model, z, layers)
            loss = 0.5 * (phi - target).pow(2).sum()
            if tv_weight > 0:
                loss = loss + tv_weight * total_variation(z, tv_beta).sum()
            loss = loss + 0.5 * BOX_PENALTY * (torch.relu(-z).pow(2).sum() + torch.relu(z - 1.0).pow(2).sum())
            loss.backward()
        if z.grad is None:  # backward through phi always reaches z; a model that cuts it is refused
            raise InvalidInput("the features do not depend on the input image (no gradient reached it)")
        cache.update(z=z.detach().clone(), grad=z.grad.detach().clone(), loss=loss.detach())
        return loss.detach()

    for _ in range(iterations):
        before = z.detach().clone()
        optimizer.step(closure)
        loss = float(closure())
        # Converged (L-BFGS made no move) or diverged: the remaining iterations are moot.
        done = torch.equal(before, z) or not math.isfinite(loss)
        if done:
            reporter.skip_to(end_step - 1)
        reporter.report(loss / batch, stage, lambda: z.detach())
        if done:
            break
    return z.detach()
