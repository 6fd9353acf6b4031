"""LeNet's convolutions: torch's native kernel against oneDNN, by batch size and torch threads.

``models.lenet.Conv2d`` computes LeNet's 5 x 5 convolutions with torch's native kernel on one
torch thread for at most ``NATIVE_MAX_BATCH`` images, and leaves every other case to
``nn.Conv2d`` (which sends them to oneDNN). This prints why: the served LeNet (its bundled
weights) against the same network with plain ``nn.Conv2d`` layers and
the same weights, for a forward (``inference_mode``) and a forward + backward to the input (what
a gradient saliency computes), per batch size and torch thread count. Both are timed interleaved
in the same run; p50 over ``--repeats`` calls, µs.

    python -m benchmarks.bench_lenet_convs [--repeats 300]
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch
from torch import nn

from benchmarks._common import interleaved, load_report, table
from benchmarks._lenet import load_lenet
from models import lenet

BATCHES = (1, 4, 16, 64, 256)


def plain_copy(model: nn.Module) -> nn.Module:
    """The same network and weights with every ``lenet.Conv2d`` replaced by a plain ``nn.Conv2d``."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, lenet.Conv2d):
            module.__class__ = nn.Conv2d  # same parameters and settings, torch's own forward
    return plain


def forward(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def forward_backward(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        xg = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(xg)[:, 0].sum(), xg)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per case (default 300)")
    args = parser.parse_args()
    served = load_lenet()
    plain = plain_copy(served).eval()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in BATCHES:
            x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
            for what, make in (("forward", forward), ("forward + backward", forward_backward)):
                repeats = max(20, args.repeats // batch)
                times = interleaved({"lenet": make(served, x), "plain": make(plain, x)}, repeats)
                ours, theirs = (statistics.median(times[k]) * 1e6 for k in ("lenet", "plain"))
                path = "native" if threads == 1 and batch <= lenet.NATIVE_MAX_BATCH else "oneDNN"
                rows.append([threads, batch, what, path, f"{ours:,.0f}", f"{theirs:,.0f}", f"{ours / theirs:.2f}"])
    print(load_report())
    header = ["torch threads", "images", "computation", "served Conv2d takes", "served µs", "nn.Conv2d µs", "ratio"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
