"""Quality bars of the iterative methods on a trained LeNet (issue 5), printed as markdown tables.

``--model lenet`` (default) or ``--model lenet-classic`` (the lecture's sigmoid / average-pool LeNet);
"act2" below is the activation after ``conv2``: ``relu2`` (after batch norm) for ``lenet``, ``sig2``
for ``lenet-classic``.

1. VisualizeFilter, every channel of ``conv2`` (objective: channel mean, default parameters, all
   16 channels as one batch): the optimized image's activation of the channel, divided by the
   channel's **maximum** over the 10k Fashion-MNIST test images under the same objective. The
   bar is measured on act2 (the activation the network passes on; for ``lenet`` the post-ReLU
   one, where dead channels make it hard); the raw ``conv2`` output is reported too.
   Bar: every ratio > 1.
2. DeepDream on the first ``--dream-images`` test images, act2, default parameters: L2 norm of
   the activation on the dream / on the input. Bar: mean >= 3 (set on ``lenet``'s ``relu2``).
3. Deep feature interpolation: the first ``--n-sources`` test sneakers, attribute sets of
   ``--set-size`` ankle boots and sneakers drawn (seeded, without replacement) from the
   training set, phi = the model's default DFI layers (``relu1 + relu2``, ``sig1 + sig2``), default
   parameters and alphas, all sources as one batch. Bars: the share classified "Ankle boot" grows
   with alpha and is >= 80 % at the largest alpha; relative feature error at alpha 0 <= 5 %.

Usage: .venv/bin/python -m benchmarks.eval_lenet_iterative [--model lenet-classic] [--weights PATH] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from interp.hooks import run_until
from interp.synthesis.deepdream import DeepDreamParams, deepdream
from interp.synthesis.deepdream import resolve as resolve_dream
from interp.synthesis.feature_interpolation import DEFAULT_ALPHAS, attribute_vector, interpolate_features
from interp.synthesis.feature_interpolation import resolve as resolve_dfi
from interp.synthesis.feature_vis import visualize_filter
from interp.synthesis.feature_vis_params import FeatureVisParams
from models.datasets import load_dataset
from models.errors import WeightsNotFound
from models.lenet import FASHION_MNIST_CLASSES
from models.registry import get_spec
from models.weights import WeightsOptions, resolve_weights

SNEAKER = FASHION_MNIST_CLASSES.index("Sneaker")
ANKLE_BOOT = FASHION_MNIST_CLASSES.index("Ankle boot")
# The activation after conv2, per model: where the filter and DeepDream bars are measured.
ACTIVATION_AFTER_CONV2 = {"lenet": "relu2", "lenet-classic": "sig2"}


def load_trained(name: str, path: Path | None) -> tuple[nn.Module, str]:
    """The registry's ``name`` with its bundled weights (or the state_dict at ``path``), frozen, in eval mode."""
    spec = get_spec(name)
    options = WeightsOptions(files={name: path} if path is not None else {})
    try:
        state, info = resolve_weights(spec, options)
    except WeightsNotFound as err:
        raise SystemExit(str(err)) from None
    model = spec.build()
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, Path(info.path).name


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images).float().unsqueeze(1) / 255.0


def channel_means(model: nn.Module, x: Tensor, layer: str, batch: int = 1000) -> Tensor:
    """(N, C): the spatial mean of every channel of ``layer`` for each image."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            parts.append(run_until(model, x[start : start + batch], [layer])[layer].mean((2, 3)))
    return torch.cat(parts)


def eval_filters(model: nn.Module, test_x: Tensor, seeds: list[int], act2: str) -> bool:
    print("## 1. VisualizeFilter: every conv2 channel vs its maximum over the 10k test images\n")
    ok = True
    for layer in (act2, "conv2"):
        dataset_max = channel_means(model, test_x, layer).max(0).values
        reached, seconds = [], []
        for seed in seeds:
            start = time.perf_counter()
            result = visualize_filter(model, layer, range(16), in_channels=1, params=FeatureVisParams(seed=seed))
            seconds.append(time.perf_counter() - start)
            reached.append(result.activations)
        p = result.params
        print(
            f"`{layer}`, objective {p.objective}, {p.steps} steps, {p.image_size} px, lr {p.learning_rate}, "
            f"{p.parameterization}, transforms {p.transforms}; {np.mean(seconds):.1f} s per run of 16 channels. "
            "Cells: optimized / test-set max (where the max is <= 0: the optimized value).\n"
        )
        print("| channel | test-set max | " + " | ".join(f"seed {s}" for s in seeds) + " |")
        print("|---:|---:|" + "---:|" * len(seeds))
        for c in range(16):
            top = float(dataset_max[c])
            cells = " | ".join(
                f"{float(a[c]) / top:.2f}" if top > 0 else f"{float(a[c]):+.3f}" + (" (above)" if a[c] > top else "")
                for a in reached
            )
            print(f"| {c} | {top:.3f} | {cells} |")
        above = torch.stack([a > dataset_max for a in reached])
        if bool((dataset_max > 0).all()):
            ratios = [a / dataset_max for a in reached]
            print(
                "| **min / median** | | "
                + " | ".join(f"**{float(r.min()):.2f} / {float(r.median()):.2f}**" for r in ratios)
                + " |"
            )
        passed = bool(above.all())
        print(f"\n`{layer}`: {int(above.sum())}/{above.numel()} channel-runs above the test-set maximum: ", end="")
        print(f"{'PASS' if passed else 'FAIL'}\n")
        if layer == act2:
            ok = ok and passed
    return ok


def eval_dream(model: nn.Module, test_x: Tensor, n: int, layer: str) -> bool:
    p = resolve_dream(None, in_channels=1, input_size=28)
    print(f"## 2. DeepDream: `{layer}` activation L2 norm, dream / input, first {n} test images\n")
    print(
        f"octaves {p.octaves} x {p.iterations} iterations, scale {p.octave_scale}, step {p.step_size}, "
        f"jitter {p.jitter} px, seed {p.seed}\n"
    )
    gains, start = [], time.perf_counter()
    for i in range(n):
        result = deepdream(model, test_x[i : i + 1], {layer: 1.0}, params=DeepDreamParams())
        gains.append(result.norms_after[layer] / result.norms_before[layer])
    seconds = (time.perf_counter() - start) / n
    g = np.array(gains)
    print("| images | mean gain | min | median | max | s per image |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {n} | **{g.mean():.2f}** | {g.min():.2f} | {np.median(g):.2f} | {g.max():.2f} | {seconds:.2f} |\n")
    passed = bool(g.mean() >= 3.0)
    print(f"{'PASS' if passed else 'FAIL'} (mean gain >= 3)\n")
    return passed


def eval_dfi(
    model: nn.Module,
    test: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    args: argparse.Namespace,
    layers: tuple[str, ...],
) -> bool:
    train_x, train_y = train

    def draw(label: int) -> Tensor:
        # As the server draws class-name sets: a fresh seeded generator per set, sorted indices.
        chosen = np.random.default_rng(args.set_seed).choice(
            np.flatnonzero(train_y == label), args.set_size, replace=False
        )
        return to_tensor(train_x[np.sort(chosen)])

    positive, negative = draw(ANKLE_BOOT), draw(SNEAKER)
    test_x, test_y = test
    sources = to_tensor(test_x[np.flatnonzero(test_y == SNEAKER)[: args.n_sources]])
    p = resolve_dfi(None, num_alphas=len(DEFAULT_ALPHAS))
    print(
        f"## 3. Deep feature interpolation: {len(sources)} test sneakers -> ankle boot "
        f"(sets: {args.set_size} + {args.set_size} training images, seed {args.set_seed})\n"
    )
    print(
        f"phi = {' + '.join(layers)}, L-BFGS {p.iterations} iterations then {p.warm_iterations} per "
        f"warm-started alpha, TV weight {p.tv_weight} (beta {p.tv_beta}), attribute normalized: "
        f"{p.normalize_attribute}\n"
    )
    w = attribute_vector(model, positive, negative, list(layers))
    start = time.perf_counter()
    results = interpolate_features(model, sources, list(layers), direction=w, alphas=DEFAULT_ALPHAS)
    seconds = time.perf_counter() - start
    shares = []
    print("| alpha | classified Ankle boot | classified Sneaker | rel. feature error mean | max |")
    print("|---:|---:|---:|---:|---:|")
    for r in results:
        with torch.no_grad():
            predicted = model(r.images).argmax(1)
        boot = float((predicted == ANKLE_BOOT).float().mean())
        sneaker = float((predicted == SNEAKER).float().mean())
        shares.append(boot)
        err_mean, err_max = float(r.feature_error.mean()), float(r.feature_error.max())
        print(f"| {r.alpha:g} | {100 * boot:.0f} % | {100 * sneaker:.0f} % | {err_mean:.4f} | {err_max:.4f} |")
    print(f"\n{seconds:.1f} s for all alphas ({1000 * seconds / len(sources):.0f} ms per image)\n")
    grows = all(b >= a for a, b in zip(shares, shares[1:], strict=False))
    passed = grows and shares[-1] >= 0.8 and float(results[0].feature_error.max()) <= 0.05
    print(
        f"{'PASS' if passed else 'FAIL'} (share grows with alpha: {grows}; >= 80 % at alpha "
        f"{results[-1].alpha:g}: {shares[-1] >= 0.8}; alpha-0 feature error <= 5 %: "
        f"{float(results[0].feature_error.max()) <= 0.05})\n"
    )
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(ACTIVATION_AFTER_CONV2), default="lenet")
    parser.add_argument("--weights", type=Path, default=None, help="a state_dict (default: the bundled weights)")
    parser.add_argument("--seeds", default="0,1,2", help="VisualizeFilter seeds (default: %(default)s)")
    parser.add_argument("--dream-images", type=int, default=20)
    parser.add_argument("--n-sources", type=int, default=100)
    parser.add_argument("--set-size", type=int, default=100)
    parser.add_argument("--set-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=("filters", "dream", "dfi"), default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, weights_name = load_trained(args.model, args.weights)
    act2 = ACTIVATION_AFTER_CONV2[args.model]
    test = load_dataset("fashion-mnist", "test")
    test_x = to_tensor(test[0])
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(1).numpy() == test[1]).mean())
    print(
        f"# Iterative methods on the trained {args.model}\n\n"
        f"weights `{weights_name}`, test accuracy {100 * accuracy:.2f} %\n"
    )

    results = {}
    if args.only in (None, "filters"):
        results["filters"] = eval_filters(model, test_x, [int(s) for s in args.seeds.split(",")], act2)
    if args.only in (None, "dream"):
        results["dream"] = eval_dream(model, test_x, args.dream_images, act2)
    if args.only in (None, "dfi"):
        dfi_layers = get_spec(args.model).default_dfi_layers
        results["dfi"] = eval_dfi(model, test, load_dataset("fashion-mnist", "train"), args, dfi_layers)
    print("| bar | result |\n|---|---|")
    for name, passed in results.items():
        print(f"| {name} | {'PASS' if passed else 'FAIL'} |")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
