"""Adversarial attacks: Attack (FGSM / BIM / PGD at given epsilons), MinimalAttack (the smallest
perturbation that fools the model) and AttackDataset (robust accuracy over a dataset, streamed).
Which parameters each method reads is the method table's ``applies``."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from interp import rendering
from interp.attacks.deepfool import deepfool
from interp.attacks.linf import AttackParams, resolve_params
from interp.attacks.linf import attack as compute_attack
from interp.attacks.minimal_epsilon import minimal_epsilon
from interp.attacks.minimal_params import DEEPFOOL_METHODS, MinimalAttackParams
from interp.attacks.minimal_params import resolve as resolve_minimal
from interp.attacks.robustness import (
    AttackDatasetParams,
    RobustnessResult,
    curve_png,
    resolve_dataset_params,
    robustness,
)
from models.dataset_registry import Dataset
from models.loaded import LoadedModel
from models.registry import ModelSpec
from protos import interp_pb2 as pb
from server import budgets, convert
from server.context import Ctx
from server.errors import BadRequest
from server.handlers.base import Streamed, dataset_named, flag, handler, input_echo, per_image
from server.stores.datasets import load_first
from server.stores.results import robustness_key

DEFAULT_STEPS, DEFAULT_BATCH = 10, 100  # BIM/PGD steps and images attacked together when unset (interp's)


def _resolve_attack(params: AttackParams, model: LoadedModel, request: pb.AttackRequest) -> AttackParams:
    for i, epsilon in enumerate(request.epsilons):
        if not (np.isfinite(epsilon) and 0 < epsilon <= 1):
            raise BadRequest(f"epsilon must be in (0, 1] (pixel units), got {epsilon}", field=f"epsilons[{i}]")
    return params


@handler("Attack", params=AttackParams, resolve=_resolve_attack)
def attack(ctx: Ctx, request: pb.AttackRequest, params: AttackParams) -> pb.AttackResponse:
    target = ctx.target_index(request.target)
    label = _true_label(ctx, request, target)
    include_input = flag(request, "include_input", True)
    pngs = flag(request, "include_pngs", True)
    epsilons = [float(e) for e in request.epsilons]
    resolved = _resolved_attack(request.method, epsilons[-1], params)
    # step_size is echoed per epsilon (in each outcome); bim reads its seed only with a random start
    unused = {"step_size"} | ({"seed"} if request.method == "bim" and not resolved.random_start else set())
    applies = tuple(name for name in ctx.applies or () if name not in unused)
    resolved_message = convert.params_to_proto(resolved, pb.AttackParams, only=applies)
    module = ctx.module

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
                result = compute_attack(
                    module,
                    x[attacked],
                    method=request.method,
                    epsilon=epsilon,
                    labels=_classes(len(attacked), label, x.device),
                    target=_classes(len(attacked), target, x.device),
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
                reply.input.CopyFrom(input_echo(x[i], png=pngs))

    return per_image(ctx, request, pb.AttackResponse, run)


def _classes(count: int, index: int | None, device: torch.device) -> torch.Tensor | None:
    """(count,) copies of one class index for a batch; None when the index is None."""
    return None if index is None else torch.full((count,), index, dtype=torch.long, device=device)


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


# -- minimal perturbations ------------------------------------------------------------------------


def _resolve_minimal(
    params: MinimalAttackParams, model: LoadedModel, request: pb.MinimalAttackRequest
) -> MinimalAttackParams:
    return resolve_minimal(request.method, params, model.spec.num_classes)


@handler("MinimalAttack", params=MinimalAttackParams, resolve=_resolve_minimal)
def minimal_attack(ctx: Ctx, request: pb.MinimalAttackRequest, params: MinimalAttackParams) -> pb.MinimalAttackResponse:
    method = request.method
    if request.HasField("target"):
        if request.target.WhichOneof("kind") is None:
            raise BadRequest("a targeted search needs a target class: set target.index or target.label", field="target")
        if method in DEEPFOOL_METHODS:
            raise BadRequest(f"{method} is untargeted; a targeted minimal search uses fgsm, bim or pgd", field="target")
    target = ctx.target_index(request.target)
    label = _true_label(ctx, request, target)
    resolved = convert.params_to_proto(params, pb.MinimalAttackParams, only=ctx.applies)
    include_input = flag(request, "include_input", True)
    pngs = flag(request, "include_pngs", True)
    module = ctx.module

    def run(x: torch.Tensor, out: list[pb.MinimalAttackResponse], should_stop: Callable[[], bool]) -> None:
        # The images are searched together (one batch per search level or DeepFool iteration);
        # the interp functions attack each image of a batch as it would be attacked alone.
        with torch.no_grad():
            probs = torch.softmax(module(x), dim=1)
        count, device = x.shape[0], x.device
        if method in DEEPFOOL_METHODS:
            result = deepfool(
                module,
                x,
                norm=method.removeprefix("deepfool_"),
                labels=_classes(count, label, device),
                params=params,
                should_stop=should_stop,
            )
            adversarial, goals = result.adversarial.detach(), result.labels
            for i, reply in enumerate(out):
                reply.found = bool(result.success[i])
                reply.clean_misclassified = bool(result.clean_success[i])
                reply.success_raw = bool(result.success_raw[i])
                reply.linf_raw = float(result.linf_raw[i])
                reply.l2_raw = float(result.l2_raw[i])
                reply.rounded_outward = bool(result.rounded_outward[i])
                reply.iterations = int(result.iterations[i])
                reply.level = -1
                reply.monotone = True
            scales = [max(float(linf), 1 / 255) for linf in result.linf.tolist()]
        else:
            found = minimal_epsilon(
                module,
                x,
                method=method,
                labels=_classes(count, label, device),
                target=_classes(count, target, device),
                params=params,
                should_stop=should_stop,
            )
            adversarial, goals = found.adversarial.detach(), found.labels
            for i, reply in enumerate(out):
                level = int(found.levels[i])
                reply.found = bool(found.found[i])
                reply.clean_misclassified = bool(found.clean_success[i]) and target is None
                reply.level = level
                # found: the minimal radius; not found: the largest radius tried (max_epsilon on the 8-bit grid)
                reply.epsilon = (max(level, 0) if reply.found else found.k_max) / 255
                reply.runs = int(found.runs[i])
                reply.monotone = bool(found.monotone[i])
                reply.violations.extend(found.violations[i])
            scales = [max(int(level), 1) / 255 for level in found.levels.tolist()]
        with torch.no_grad():
            adv_probs = torch.softmax(module(adversarial), dim=1)
        for i, reply in enumerate(out):
            original, goal, predicted = int(probs[i].argmax()), int(goals[i]), int(adv_probs[i].argmax())
            image, clean = adversarial[i].cpu(), x[i].cpu()
            delta = image - clean
            if include_input:
                reply.input.CopyFrom(input_echo(x[i], png=pngs))
            reply.method = method
            reply.original.CopyFrom(ctx.prediction(original, probs[i, original]))
            reply.targeted = target is not None
            reply.label.CopyFrom(ctx.prediction(goal, probs[i, goal]))
            reply.adversarial.CopyFrom(convert.tensor(image))
            if pngs:
                reply.adversarial_png = rendering.encode_png(rendering.to_uint8_image(image))
                reply.perturbation_png = rendering.encode_png(rendering.perturbation_image(delta, scales[i]))
            reply.prediction.CopyFrom(ctx.prediction(predicted, adv_probs[i, predicted]))
            reply.success = predicted == goal if target is not None else predicted != goal
            reply.linf = float(delta.abs().max())
            reply.l2 = float(delta.norm())
            reply.resolved.CopyFrom(resolved)

    return per_image(ctx, request, pb.MinimalAttackResponse, run)


# -- robustness over a dataset ------------------------------------------------------------------


def attack_images(
    dataset: Dataset, spec: ModelSpec, limit: int, true_labels: bool, device: str | torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The first ``limit`` images of a registered dataset, preprocessed as the model's input.

    Returns ``(x (N, C, H, W) in [0, 1], labels (N,) in the model's class indices or None, skipped)``:
    images that cannot be read or converted are skipped and counted, never fatal. With true labels the
    dataset must fit the model: its classes must all be classes of the model (matched by name, so an
    image folder with ``Sneaker/``, ``Bag/`` sub-folders works for the Fashion-MNIST LeNets); a
    dataset without class sub-folders has no true labels.
    """
    name = dataset.name
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
    x = x.to(device)
    if label_map is None:
        return x, None, skipped
    labels = label_map[dataset.labels()[np.asarray(ids, dtype=np.int64)]]
    return x, torch.from_numpy(labels).to(x.device), skipped


def _resolve_dataset(
    params: AttackDatasetParams, model: LoadedModel, request: pb.AttackDatasetRequest
) -> AttackDatasetParams:
    methods = list(request.methods)
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
    limit = request.limit if request.HasField("limit") else 1000
    true_labels = request.true_labels if request.HasField("true_labels") else True
    methods, epsilons = list(request.methods), [float(e) for e in request.epsilons]
    stored = _stored_robustness(ctx, request.dataset, methods, epsilons, params, limit, true_labels)
    if stored is not None:  # computed offline by interp-robustness: answered now
        return Streamed(lambda on_step, should_stop: stored, lambda reply: reply)
    if limit > ctx.limits.max_dataset_images:
        raise BadRequest(
            f"the default limit ({limit}) is above this server's max_dataset_images={ctx.limits.max_dataset_images}",
            field="limit",
        )
    images = min(limit, dataset_named(ctx, request.dataset).size)
    steps, batch = params.steps or DEFAULT_STEPS, params.batch_size or DEFAULT_BATCH  # interp's defaults
    cost = budgets.attack_dataset_cost(ctx.model, images, methods, len(epsilons), steps, batch)
    ctx.check_job("AttackDataset", cost, "attack fewer images (limit), with fewer epsilons, methods or steps")
    x, y, skipped = attack_images(dataset_named(ctx, request.dataset), ctx.model.spec, limit, true_labels, ctx.device)
    attacked = len(x)
    title = f"{ctx.model.spec.name} on {request.dataset} ({attacked} images)"
    run = partial(robustness, ctx.module, x, y, methods=methods, epsilons=epsilons, params=params)

    def finish(result: Any) -> pb.AttackDatasetResult:
        return robustness_reply(result, request.dataset, attacked, skipped, title, true_labels)

    return Streamed(run, finish)


def robustness_reply(
    result: RobustnessResult, dataset: str, attacked: int, skipped: int, title: str, true_labels: bool
) -> pb.AttackDatasetResult:
    """The AttackDatasetResult of a robustness result (the server's and interp-robustness's)."""
    correct = result.clean_correct
    return pb.AttackDatasetResult(
        dataset=dataset,
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
        curve_png=curve_png(result, title),
        resolved=convert.params_to_proto(result.params, pb.AttackDatasetParams),
        true_labels=true_labels,
        norm=result.norm,
    )


MAX_REORDERED_METHODS = 5


def _stored_robustness(
    ctx: Ctx, name: str, methods: list[str], epsilons: list[float], params: AttackDatasetParams, limit: int,
    true_labels: bool,
) -> pb.AttackDatasetResult | None:  # fmt: skip
    """The answer interp-robustness stored for exactly this request, or None."""
    store = ctx.services.results
    if store is None or not store.root.is_dir():
        return None
    model = ctx.model
    dataset = dataset_named(ctx, name)
    body, order = None, methods
    # the same methods stored in another order answer too, their curves put in the request's order
    # (distinct methods only, at most the five there are: at most 120 keys to look for)
    distinct = len(set(methods)) == len(methods) <= MAX_REORDERED_METHODS
    others = (list(p) for p in itertools.permutations(methods) if list(p) != methods) if distinct else iter(())
    for order in [methods, *others]:
        key = robustness_key(model.weights.sha256, dataset.manifest(), model.spec.preprocessing, order, epsilons,
                             params, limit, true_labels)  # fmt: skip
        body = store.find(key)
        if body is not None:
            break
    if body is None:
        return None
    reply = pb.AttackDatasetResult.FromString(body)
    if order != methods:
        by_method = {curve.method: curve for curve in reply.curves}
        curves = [pb.MethodCurve() for _ in methods]
        for curve, method in zip(curves, methods, strict=True):
            curve.CopyFrom(by_method[method])
        del reply.curves[:]
        reply.curves.extend(curves)
    reply.precomputed = True
    return reply
