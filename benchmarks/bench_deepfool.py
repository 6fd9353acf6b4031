"""DeepFool speed (issue 12): per-iteration cost on VGG16 and batching on LeNet, vs raw torch.

1. VGG16 (seeded random weights; timing does not depend on the values), one 224x224 image, 10
   candidates: the wall time of each DeepFool iteration (from the start of its forward to the
   end of its last backward, timed with a forward pre-hook and the ``on_step`` callback)
   divided by the time of one raw forward+backward (logit w.r.t. the input) measured in the
   same run, interleaved. Bar: <= 12 passes' worth per iteration (foolbox runs 9 forward and 9
   backward passes; this runs 1 forward and 9 backward).
2. LeNet (trained checkpoint), 16 Fashion-MNIST test images, DeepFool L2 with 10 candidates:
   one batched call vs 16 calls of one image. Bar: batched >= 5x faster per image.
3. The ceiling of that ratio in raw torch: one DeepFool iteration's work (a forward and the 9
   candidate input gradients) for 1 image and for 16, each computed the three ways torch offers
   (a backward batched over the cotangents, the image replicated per candidate in one batch, 9
   backward calls), the fastest of each: batching 16 images cannot gain more than 16 x best(1) /
   best(16) per iteration.

Usage: .venv/bin/python -m benchmarks.bench_deepfool [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from interp.attacks.deepfool import deepfool
from interp.attacks.minimal_params import MinimalAttackParams
from models.datasets import load_dataset
from models.imagenet import build_vgg16
from models.lenet import build_lenet

REPO = Path(__file__).resolve().parent.parent


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def raw_pass(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    xr = x.clone().requires_grad_(True)
    logits = model(xr)
    (grad,) = torch.autograd.grad(logits[0, 0], xr)
    del grad
    return time.perf_counter() - start


def deepfool_iterations(model: torch.nn.Module, x: torch.Tensor, steps: int) -> list[float]:
    """Seconds of each DeepFool iteration (forward pre-hook of its forward -> its on_step)."""
    starts: list[float] = []
    ends: list[float] = []
    handle = model.register_forward_pre_hook(lambda module, args: starts.append(time.perf_counter()))
    try:
        deepfool(
            model,
            x,
            norm="l2",
            params=MinimalAttackParams(steps=steps, candidates=10),
            on_step=lambda *a: ends.append(time.perf_counter()),
        )
    finally:
        handle.remove()
    # forward 0 is the clean one; forward i (i >= 1) starts iteration i
    return [end - starts[i + 1] for i, end in enumerate(ends)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vgg-steps", type=int, default=2)
    parser.add_argument("--skip-vgg", action="store_true", help="only the LeNet batching part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_vgg:
        vgg_part(args)
    lenet_part(args)


def vgg_part(args: argparse.Namespace) -> None:

    torch.manual_seed(0)
    vgg = frozen(build_vgg16())
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    raw_pass(vgg, image)  # warm-up
    raw, iterations = [], []
    for _ in range(args.repeats):
        raw.append(raw_pass(vgg, image))
        iterations += deepfool_iterations(vgg, image, args.vgg_steps)
    per_pass, per_iteration = statistics.median(raw), statistics.median(iterations)
    print(f"VGG16, 1 image, 10 candidates, {args.threads} thread(s), {args.repeats} repeats")
    print(f"  raw forward+backward      {per_pass * 1000:8.0f} ms (median of {len(raw)})")
    print(f"  DeepFool iteration        {per_iteration * 1000:8.0f} ms (median of {len(iterations)})")
    print(f"  ratio                     {per_iteration / per_pass:8.2f} passes' worth per iteration (bar <= 12)")


def lenet_part(args: argparse.Namespace) -> None:

    weights = sorted((REPO / "models" / "weights").glob("lenet5_fashion*mnist*.pt"))
    lenet = build_lenet()
    if weights:
        lenet.load_state_dict(torch.load(weights[-1], map_location="cpu", weights_only=True))
    lenet = frozen(lenet)
    images, labels = load_dataset("fashion-mnist", "test", download=False)
    x = torch.from_numpy(images[:16].copy()).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels[:16].copy()).long()
    deepfool(lenet, x[:2], labels=y[:2])  # warm-up
    # Wall and CPU seconds of the process (1 thread): on a shared machine the wall time also counts
    # the waits for a core, which penalise the longer run; CPU time is the work itself.
    batched, single, batched_cpu, single_cpu = [], [], [], []
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        together = deepfool(lenet, x, labels=y)
        batched.append(time.perf_counter() - start)
        batched_cpu.append(time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        alone = [deepfool(lenet, x[i : i + 1], labels=y[i : i + 1]) for i in range(16)]
        single.append(time.perf_counter() - start)
        single_cpu.append(time.process_time() - cpu)
    same = all(
        bool(together.success_raw[i] == a.success_raw[0]) and abs(float(together.l2_raw[i] - a.l2_raw[0])) < 1e-4
        for i, a in enumerate(alone)
    )
    b, s = statistics.median(batched) / 16, statistics.median(single) / 16
    bc, sc = statistics.median(batched_cpu) / 16, statistics.median(single_cpu) / 16
    print(f"LeNet DeepFool L2, 16 images ({'same results' if same else 'RESULTS DIFFER'} batched and alone)")
    print(f"  batched                   {b * 1000:8.2f} ms per image ({bc * 1000:.2f} CPU ms)")
    print(f"  one image at a time       {s * 1000:8.2f} ms per image ({sc * 1000:.2f} CPU ms)")
    print(f"  speed-up                  {s / b:8.1f}x wall, {sc / bc:.1f}x CPU (bar >= 5)")
    ceiling_part(lenet, x, args.repeats)


def _grads_cotangents(model: torch.nn.Module, x: torch.Tensor) -> None:
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    cotangents = torch.zeros(9, *out.shape)
    cotangents[torch.arange(9), :, torch.arange(1, 10)] = 1.0
    cotangents[:, :, 0] = -1.0
    torch.autograd.grad(out, xr, cotangents, is_grads_batched=True)


def _grads_replicated(model: torch.nn.Module, x: torch.Tensor) -> None:
    rows = x.unsqueeze(1).expand(len(x), 9, *x.shape[1:]).reshape(9 * len(x), *x.shape[1:])
    xr = rows.clone().requires_grad_(True)
    out = model(xr).reshape(len(x), 9, -1)
    picked = out[:, torch.arange(9), torch.arange(1, 10)] - out[:, :, 0]
    torch.autograd.grad(picked.sum(), xr)


def _grads_loop(model: torch.nn.Module, x: torch.Tensor) -> None:
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    for k in range(1, 10):
        torch.autograd.grad((out[:, k] - out[:, 0]).sum(), xr, retain_graph=True)


def ceiling_part(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> None:
    ways = {"cotangents": _grads_cotangents, "replicated": _grads_replicated, "9 backward calls": _grads_loop}
    best: dict[int, float] = {}
    print("Raw torch, one DeepFool iteration's gradients (forward + 9 candidate gradients), ms per call")
    for n in (1, 16):
        batch = x[:n]
        for name, way in ways.items():
            way(model, batch)  # warm-up
            times = []
            for _ in range(max(repeats, 3) * 5):
                start = time.perf_counter()
                way(model, batch)
                times.append(time.perf_counter() - start)
            t = statistics.median(times)
            best[n] = min(best.get(n, math.inf), t)
            print(f"  {n:2d} image(s), {name:17s} {t * 1000:8.2f} ms")
    print(f"  ceiling of batching 16:   {16 * best[1] / best[16]:8.1f}x per image (fastest way at 1 vs at 16)")


if __name__ == "__main__":
    main()
