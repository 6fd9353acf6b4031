"""Step times that size the offline jobs (docs/atlas.md): one feature-visualization step per unit
and one attack (PGD) step per image, for LeNet, AlexNet and VGG16 on this machine.

**Feature visualization**: :func:`interp.synthesis.feature_vis.visualize_filter` on the model's last
convolution layer with the layer's default preset and image size, ``--batch`` channels at once;
per-step time is ``(T(N) - T(M)) / (N - M)`` (cancels a run's fixed cost), divided by the batch
for the time per unit-step. **Attack step**: one forward + backward of the cross-entropy w.r.t.
the input on ``--images`` images at the model's input size (what one PGD step costs), per image.
AlexNet and VGG16 use seeded random weights (the time does not depend on the values).

Usage: ``.venv/bin/python -m benchmarks.atlas_step_times [--models lenet,alexnet,vgg16] [--threads 2]``.
About 2 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch

from benchmarks._common import load_report
from interp.synthesis.feature_vis import visualize_filter
from interp.synthesis.feature_vis_params import FeatureVisParams
from models.hub import ModelHub
from models.loaded import LoadedModel
from server.app import weights_options
from server.atlas_command import layer_params
from server.config import ServerConfig

LAST_CONV = {"lenet": "conv2", "alexnet": "features.10", "vgg16": "features.28"}
STEPS = {"lenet": (34, 2), "alexnet": (6, 2), "vgg16": (4, 2)}  # N, M


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(model: LoadedModel, name: str, batch: int, images: int, rounds: int) -> str:
    """One table row: the feature-visualization step per batch and per unit, the attack step per image."""
    module = model.require_ready()
    layer = model.resolve_layer(LAST_CONV[name])
    n, m = STEPS[name]
    shape = model.spec.input_shape

    def run(steps: int) -> None:
        params = layer_params(model, layer, FeatureVisParams(seed=0, steps=steps))
        visualize_filter(module, layer, list(range(batch)), in_channels=shape[0], input_size=shape[1], params=params)

    per_step = (best_of(rounds, partial(run, n)) - best_of(rounds, partial(run, m))) / (n - m)
    x = torch.rand(images, *shape)
    labels = torch.zeros(images, dtype=torch.int64)

    def attack_step() -> None:
        xi = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(module(xi), labels)
        (grad,) = torch.autograd.grad(loss, xi)
        grad.sign()

    attack_step()  # warm-up
    per_image = best_of(rounds + 1, attack_step) / images
    resolved = layer_params(model, layer, FeatureVisParams(seed=0))
    return (f"{name:8} {layer:12} {resolved.image_size:4}  {resolved.steps:13}  {per_step:14.4f}  "
            f"{per_step / batch:11.4f}  {per_image:12.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="lenet,alexnet,vgg16")
    parser.add_argument("--batch", type=int, default=4, help="channels per feature-visualization batch")
    parser.add_argument("--images", type=int, default=8, help="images per attack step")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    hub = ModelHub(names, weights_options(ServerConfig(random_weights=True, download_weights=False)))
    hub.wait()
    print(load_report())
    print(f"batch {args.batch} channels; {args.images} images per attack step")
    print("model    layer        size  default steps  s/step (batch)  s/unit-step  s/image-step")
    for name in names:
        print(measure(hub.ready(name), name, args.batch, args.images, args.rounds), flush=True)
    print(load_report())


if __name__ == "__main__":
    main()
