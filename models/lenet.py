"""LeNet-5 (LeCun et al. 1998) for 1x28x28 inputs in [0, 1], with modern choices.

Topology as in the paper: conv 5x5 -> 6 (pad 2 keeps 28x28), pool, conv 5x5 -> 16, pool,
fc 120, fc 84, fc 10. Departures, each earning its place on Fashion-MNIST:
- ReLU instead of scaled tanh, max-pool instead of trainable subsampling (standard practice).
- Batch norm after each conv: in trials made before this code was written, the best test
  accuracy of the variants tried at the same epoch budget, and a larger DeepDream gain than the
  same network without it (docs/methods.md, "The served LeNet-5").
- Normalization with the Fashion-MNIST training mean/std is the first operation *inside* the
  module, so the served model takes raw pixels in [0, 1] like every other served model.
Layer names are the ones users address: conv1, bn1, relu1, pool1, ..., fc3.

:func:`build_lenet_classic` is the other served LeNet (``lenet-classic``): the network on the
lecture slide (Dive into Deep Learning, "Convolutional Neural Networks (LeNet)"), with sigmoid
activations, average pooling and no batch norm, kept exactly as the slide prints it so that a
teacher can show its saturating sigmoids and smoother average-pooled maps next to the modern one.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))

# Pixel statistics of the 60k training images (in [0, 1]).
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers are not persistent so state_dicts stay canonical."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        # The same values as ``(x - mean) / std`` with one array fewer (the division in place on
        # the difference, which nothing else holds; autograd needs neither for the backward).
        return (x - self.mean).div_(self.std)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


NATIVE_MAX_BATCH = 16


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes LeNet's small convolutions with torch's native kernel
    (unfold + matrix product) where that is the faster one: on one torch thread, for at most
    ``NATIVE_MAX_BATCH`` images (the service computes LeNet's single-image calls on one thread).
    Torch sends every 5 x 5 float convolution to oneDNN, whose set-up per call costs more than
    LeNet's few hundred thousand multiply-adds: on one thread, one image's forward took 160 µs
    against 259 with oneDNN, its forward and backward (a gradient saliency) 491 against 801 µs.
    From 64 images, or on two threads, oneDNN is as fast or faster, so those keep torch's own
    path (``python -m benchmarks.bench_lenet_convs`` prints the table). The values agree to float
    rounding (the sums run in another order); the parameters, ``state_dict`` and gradients, to
    any order, are those of ``nn.Conv2d``.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if (
            # First: a traced, compiled or exported graph keeps torch's own op (and its batch
            # size stays symbolic: no guard on it).
            not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and input.dim() == 4
            and input.shape[0] <= NATIVE_MAX_BATCH
            and input.dtype == torch.float32
            and input.device.type == "cpu"
            and self.padding_mode == "zeros"
            and self.groups == 1
            and self.dilation == (1, 1)
            and isinstance(self.padding, tuple)
            and torch.get_num_threads() == 1
        ):
            # The kernel F.conv2d itself runs when oneDNN is off (slow_conv2d; autograd to any order).
            native = torch._C._nn.thnn_conv2d  # type: ignore[attr-defined]
            return native(input, weight, self.kernel_size, bias, self.stride, self.padding)
        return super()._conv_forward(input, weight, bias)


def build_lenet(
    num_classes: int = 10, mean: float = FASHION_MNIST_MEAN, std: float = FASHION_MNIST_STD
) -> nn.Sequential:
    """LeNet-5 as a named nn.Sequential: (B, 1, 28, 28) pixels in [0, 1] -> (B, num_classes) logits."""
    return nn.Sequential(
        OrderedDict(
            [
                ("normalize", Normalize((mean,), (std,))),
                ("conv1", Conv2d(1, 6, kernel_size=5, padding=2)),
                ("bn1", nn.BatchNorm2d(6)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", Conv2d(6, 16, kernel_size=5)),
                ("bn2", nn.BatchNorm2d(16)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(16 * 5 * 5, 120)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(120, 84)),
                ("relu4", nn.ReLU()),
                ("fc3", nn.Linear(84, num_classes)),
            ]
        )
    )


def build_lenet_classic(
    num_classes: int = 10, mean: float = FASHION_MNIST_MEAN, std: float = FASHION_MNIST_STD
) -> nn.Sequential:
    """The lecture's LeNet (sigmoid, average pooling): (B, 1, 28, 28) pixels in [0, 1] -> (B, num_classes) logits.

    Dive into Deep Learning's version, layer for layer:
    ``Conv2d(1, 6, 5, padding=2) -> Sigmoid -> AvgPool2d(2) -> Conv2d(6, 16, 5) -> Sigmoid ->
    AvgPool2d(2) -> Flatten -> Linear(400, 120) -> Sigmoid -> Linear(120, 84) -> Sigmoid ->
    Linear(84, 10)``. Output shapes for one 1x28x28 input, as on the slide: 6x28x28, 6x28x28,
    6x14x14, 16x10x10, 16x10x10, 16x5x5, 400, 120, 120, 84, 84, 10. The only module the slide
    does not show is the leading :class:`Normalize` (shape unchanged), there for the same
    reason as in :func:`build_lenet`: every served model takes raw pixels in [0, 1].

    Names follow :func:`build_lenet` where the layers correspond (conv1, pool1, conv2, pool2,
    flatten, fc1, fc2, fc3); the activations are sig1 .. sig4 where ``lenet`` has relu1 .. relu4.
    """
    return nn.Sequential(
        OrderedDict(
            [
                ("normalize", Normalize((mean,), (std,))),
                ("conv1", Conv2d(1, 6, kernel_size=5, padding=2)),
                ("sig1", nn.Sigmoid()),
                ("pool1", nn.AvgPool2d(2)),
                ("conv2", Conv2d(6, 16, kernel_size=5)),
                ("sig2", nn.Sigmoid()),
                ("pool2", nn.AvgPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(16 * 5 * 5, 120)),
                ("sig3", nn.Sigmoid()),
                ("fc2", nn.Linear(120, 84)),
                ("sig4", nn.Sigmoid()),
                ("fc3", nn.Linear(84, num_classes)),
            ]
        )
    )
