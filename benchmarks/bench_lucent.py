"""Issue 5: filter visualization per step, ours vs torch-lucent's ``render_vis`` (same objective, same size).

Objective: the spatial mean of channel 0 of VGG16 ``conv3_1`` (``features.10``; lucent's
``"features_10:0"``), a 128 px Fourier-parameterized, colour-decorrelated image, Lucid's standard
transforms (pad 12, jitter 8, scale 0.9-1.1, rotate ±10°, jitter 4), Adam lr 0.05: the same
recipe on both sides (ours scales the transforms to the image size, which at 128 px are
exactly Lucid's). VGG16 has seeded random weights; lucent gets a deep copy of the served module
(same weights, normalization inside the module, so ``preprocess=False``), a fresh copy per run
because lucent's hooks are never removed.

Rows:

- **ours, SDK**: ``InterpClient.visualize_filter`` over loopback to an in-process server
  (progress events streamed, previews every 32 steps as in a default 512-step run).
- **ours, raw interp**: :func:`interp.synthesis.feature_vis.visualize_filter` called in-process, no
  callbacks: separates the service overhead from the method.
- **lucent, fixed_image_size=128**: ``render_vis(..., fixed_image_size=128)``, the same 128 px
  image fed to the network: the like-for-like comparison (the target is judged on it).
- **lucent, default**: ``render_vis`` with its default resizing, which upsamples any image
  under 224 px to 224 before the network (what a lucent user gets with ``param.image(128)``).

Where the difference comes from: ours stops the forward pass at ``conv3_1``; lucent runs the
whole network (all 13 convs and the classifier) every step with a hook on every module.

Per-step time: ``(T(N steps) - T(M steps)) / (N - M)`` per side, rounds interleaved in rotating
order, medians over rounds. Target (issue 5): ours ≥ 1.5x faster per step.

Reproduce (lucent lives outside .venv and outside the requirements; ``.venv-bench/`` is gitignored)::

    .venv/bin/pip install --target .venv-bench/site --no-deps torch-lucent==0.1.8 kornia==0.4.1 decorator
    .venv/bin/pip install --target .venv-bench/site ipython   # lucent imports IPython.display at import
    .venv/bin/python -m benchmarks.bench_lucent

The directory is appended to ``sys.path`` of this process only (after .venv's site-packages, so
.venv's torch, numpy and tqdm are the ones used; lucent pins kornia<=0.4.1, which still works
with this torch). Lucent picks ``cuda:0`` only when CUDA is available: here it runs on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks._common import interleaved, load_report, ms, running_server, table, verdict
from client import InterpClient
from interp.synthesis.feature_vis import visualize_filter
from interp.synthesis.feature_vis_params import FeatureVisParams

LUCENT_DIR = Path(__file__).resolve().parent.parent / ".venv-bench" / "site"
TARGET_SPEEDUP = 1.5
LAYER, PATH, CHANNEL, SIZE, LR = "conv3_1", "features.10", 0, 128, 0.05
PREVIEW_EVERY = 512 // 16


def import_lucent():
    """lucent's render/param modules from .venv-bench/site, or None when it is not installed."""
    if not (LUCENT_DIR / "lucent").is_dir():
        return None
    if str(LUCENT_DIR) not in sys.path:
        sys.path.append(str(LUCENT_DIR))
    warnings.filterwarnings("ignore", category=FutureWarning)  # kornia 0.4's torch.jit.script
    warnings.filterwarnings("ignore", category=UserWarning)
    from lucent.optvis import param, render

    return render, param


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, nargs=2, default=(40, 10), metavar=("N", "M"))
    parser.add_argument("--steps-lucent-224", type=int, nargs=2, default=(20, 5), metavar=("N", "M"))
    args = parser.parse_args(argv)
    lucent = import_lucent()
    if lucent is None:
        print(f"bench_lucent: skipped, torch-lucent is not installed in {LUCENT_DIR} (see this script's docstring)")
        return
    render, param = lucent
    n, m = args.steps
    n224, m224 = args.steps_lucent_224

    print(f"before: {load_report()}")
    with running_server(["vgg16"]) as (server, target), InterpClient(target, timeout=3600) as client:
        client.wait_ready()
        module = server.servicer.hub.get("vgg16").require_ready()

        def sdk(steps: int) -> Callable[[], object]:
            return lambda: client.visualize_filter(
                "vgg16", LAYER, [CHANNEL], steps=steps, image_size=SIZE, learning_rate=LR,
                preview_every=PREVIEW_EVERY,
            )

        def ours_raw(steps: int) -> Callable[[], object]:
            params = FeatureVisParams(steps=steps, image_size=SIZE, learning_rate=LR)
            return lambda: visualize_filter(module, PATH, [CHANNEL], in_channels=3, params=params)

        fresh: list[torch.nn.Module] = []

        def new_copy() -> None:  # untimed: lucent never removes its hooks, so each run gets its own copy
            fresh.append(copy.deepcopy(module))

        def luc(steps: int, fixed: int | None) -> Callable[[], object]:
            return lambda: render.render_vis(
                fresh.pop(), f"{PATH.replace('.', '_')}:{CHANNEL}", param_f=lambda: param.image(SIZE),
                optimizer=lambda p: torch.optim.Adam(p, lr=LR), thresholds=(steps,), preprocess=False,
                progress=False, show_image=False, fixed_image_size=fixed,
            )

        runs = {
            "sdk_n": sdk(n), "sdk_m": sdk(m), "raw_n": ours_raw(n), "raw_m": ours_raw(m),
            "luc128_n": luc(n, SIZE), "luc128_m": luc(m, SIZE),
            "luc224_n": luc(n224, None), "luc224_m": luc(m224, None),
        }
        setup = {name: new_copy for name in runs if name.startswith("luc")}
        times = interleaved(runs, args.rounds, warmup=1, setup=setup)
    print(f"after: {load_report()}")

    def per_step(key: str, steps: tuple[int, int]) -> float:
        a, b = times[f"{key}_n"], times[f"{key}_m"]
        return statistics.median((x - y) / (steps[0] - steps[1]) for x, y in zip(a, b, strict=True))

    ours_sdk, ours_raw_s = per_step("sdk", (n, m)), per_step("raw", (n, m))
    luc128, luc224 = per_step("luc128", (n, m)), per_step("luc224", (n224, m224))
    rows = [
        ["ours, SDK over loopback (128 px into the network)", ms(ours_sdk), "1.00", "", ""],
        ["ours, raw interp in-process", ms(ours_raw_s), f"{ours_sdk / ours_raw_s:.2f} (service overhead)", "", ""],
        [
            "lucent render_vis, fixed_image_size=128",
            ms(luc128),
            f"{luc128 / ours_sdk:.2f}x slower than ours (SDK)",
            f"≥ {TARGET_SPEEDUP:.1f}x",
            verdict(luc128 / ours_sdk, TARGET_SPEEDUP, higher_is_better=True),
        ],
        [
            "lucent render_vis, default (upsampled to 224 px)",
            ms(luc224),
            f"{luc224 / ours_sdk:.2f}x slower than ours (SDK)",
            f"≥ {TARGET_SPEEDUP:.1f}x",
            verdict(luc224 / ours_sdk, TARGET_SPEEDUP, higher_is_better=True),
        ],
    ]
    print()
    print(f"### Filter visualization vs torch-lucent: VGG16 {LAYER} channel {CHANNEL}, {SIZE} px, per step")
    print()
    print(table(["implementation", "ms/step", "relative", "target", "status"], rows))
    print()
    print(
        f"ms/step = (T({n}) - T({m})) / {n - m} (lucent default: (T({n224}) - T({m224})) / {n224 - m224}), "
        f"median of {args.rounds} interleaved rounds; ours raw interp ÷ lucent 128: {luc128 / ours_raw_s:.2f}x."
    )


if __name__ == "__main__":
    main()
