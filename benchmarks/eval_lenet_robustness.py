"""Robust accuracy of the trained LeNet and DeepFool's minimal perturbations (issue 12), as markdown.

On the first ``--images`` Fashion-MNIST test images, true labels:

1. Robust accuracy under FGSM and PGD (20 steps of 0.01, random start, seed 0) at each epsilon,
   attacked at exactly that epsilon (``interp.attacks.linf.attack``, what the Attack RPC does;
   success judged on the 8-bit image inside the ball).
2. The same curves as AttackDataset computes them (``interp.attacks.robustness.robustness``): the 8-bit
   radius floor(255 eps)/255 per epsilon, read from the per-image minimal-eps search (PGD: the
   default 10 steps of eps/10), with the median minimal eps and the non-monotone count.
3. DeepFool L2 and L-inf (10 candidates, overshoot 0.02, 50 steps): success and median norm over
   the clean-correct images, raw (foolbox's numbers) and after 8-bit rounding.

Usage: .venv/bin/python -m benchmarks.eval_lenet_robustness [--images 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._lenet import lenet_checkpoint, load_lenet
from interp.attacks.deepfool import deepfool
from interp.attacks.linf import AttackParams, attack
from interp.attacks.robustness import AttackDatasetParams, robustness
from models.datasets import load_dataset

EPSILONS = (0.01, 0.03, 0.05, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = [lenet_checkpoint()]
    model = load_lenet(weights[-1])
    images, labels = load_dataset("fashion-mnist", "test", download=False)
    x = torch.from_numpy(images[: args.images].copy()).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels[: args.images].copy()).long()
    with torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    print(
        f"LeNet {weights[-1].name}, first {len(x)} Fashion-MNIST test images, "
        f"clean accuracy {correct.float().mean():.4f}\n"
    )

    # 1. attacked at exactly eps
    started = time.perf_counter()
    pgd = AttackParams(step_size=0.01, steps=20, seed=0)
    rows = []
    for method, params in (("fgsm", AttackParams()), ("pgd", pgd)):
        accuracy = []
        for eps in EPSILONS:
            broken = torch.zeros(len(x), dtype=torch.bool)
            for start in range(0, len(x), args.batch):
                sl = slice(start, start + args.batch)
                result = attack(model, x[sl], method=method, epsilon=eps, labels=y[sl], params=params)
                broken[sl] = result.success
            accuracy.append(float((correct & ~broken).float().mean()))
        rows.append((method, accuracy))
    print("| attack (at exactly eps) | " + " | ".join(f"eps {e:g}" for e in EPSILONS) + " |")
    print("|---|" + "---:|" * len(EPSILONS))
    for method, accuracy in rows:
        label = "FGSM" if method == "fgsm" else "PGD (20 x 0.01, random start)"
        print(f"| {label} | " + " | ".join(f"{a:.3f}" for a in accuracy) + " |")
    print(f"\n({time.perf_counter() - started:.0f} s)\n")

    # 2. AttackDataset's curve on the 8-bit grid, with the minimal eps
    started = time.perf_counter()
    result = robustness(
        model, x, y, methods=["fgsm", "pgd"], epsilons=list(EPSILONS), params=AttackDatasetParams(batch_size=args.batch)
    )
    levels = [int(e * 255 + 1e-9) for e in EPSILONS]
    print(
        "| AttackDataset curve | "
        + " | ".join(f"eps {e:g} (k={k})" for e, k in zip(EPSILONS, levels, strict=True))
        + " | median k*/255 | non-monotone | runs/image |"
    )
    print("|---|" + "---:|" * (len(EPSILONS) + 3))
    for curve in result.curves:
        median = curve.median_minimal(result.clean_correct)
        print(
            f"| {curve.method} | "
            + " | ".join(f"{a:.3f}" for a in curve.accuracy)
            + f" | {median:.4f} ({round(median * 255)}/255) | {curve.non_monotone} | {curve.runs / len(x):.1f} |"
        )
    print(f"\n({time.perf_counter() - started:.0f} s)\n")

    # 3. DeepFool
    started = time.perf_counter()
    print(
        "| DeepFool (10 candidates, overshoot 0.02) | success | median L2 | median Linf "
        "| median L2 8-bit | median Linf 8-bit | 8-bit success |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for norm in ("l2", "linf"):
        parts = []
        for start in range(0, len(x), args.batch):
            sl = slice(start, start + args.batch)
            parts.append(deepfool(model, x[sl], norm=norm, labels=y[sl]))
        cat = {
            k: torch.cat([getattr(p, k) for p in parts])
            for k in ("success_raw", "success", "l2_raw", "linf_raw", "l2", "linf")
        }
        ok = correct
        print(
            f"| {norm} | {cat['success_raw'][ok].float().mean():.3f} | {cat['l2_raw'][ok].median():.4f} | "
            f"{cat['linf_raw'][ok].median():.4f} | {cat['l2'][ok].median():.4f} | {cat['linf'][ok].median():.4f} | "
            f"{cat['success'][ok].float().mean():.3f} |"
        )
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
