"""Layer catalogue: output shapes and receptive fields by conv arithmetic, without a forward pass.

For every leaf module of a sequential model, in forward order, the catalogue gives the output
shape per sample, the channel count, the parameter count and, for layers that keep a spatial
layout, the receptive field on the input (Araujo et al. 2019, "Computing Receptive Fields of
Convolutional Neural Networks"), composed layer by layer:

    output size  N_out = floor((N + 2P - D(K-1) - 1) / S) + 1   (ceil with ceil_mode pools)
    size         r_out = r_in + (K - 1) * D * j_in
    jump         j_out = j_in * S
    start        s_out = s_in + ((K - 1) / 2 * D - P) * j_in

Pixel-centre convention: input pixel i has its centre at coordinate i (so the input starts at
r = 1, j = 1, s = 0). Output unit k of a layer then sees input pixels centred on s + k * j,
spanning s + k*j - (r-1)/2 .. s + k*j + (r-1)/2 (clipped to the image; a half-integer start
means an even-sized field). The field is square for every served model; for a non-square
kernel the catalogue reports the height's values.

The Normalize module is listed too (shape unchanged, r = 1): it is a real, hookable module path
and shows that normalization happens inside the model. After Flatten or Linear there is no
spatial layout, so the receptive field is None; after an adaptive pool it is kept only where the
pool is the identity (VGG16's and AlexNet's at 224 px) or pools evenly, else None.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from torch import nn

from models.lenet import Normalize

# Modules that act on each spatial position independently: shape and receptive field unchanged.
POINTWISE = (
    Normalize,
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Dropout,
    nn.Dropout2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LocalResponseNorm,  # across channels only
)


@dataclass(frozen=True)
class LayerInfo:
    """One leaf module of a served model.

    Attributes:
        name: module path ("features.10").
        aliases: other names for it ("conv3_1",), possibly empty.
        type: module class name ("Conv2d").
        output_shape: per sample, (C, H, W) for spatial layers, (F,) after flatten.
        channels: output_shape[0].
        rf_size: receptive field side on the input, pixels; None without a spatial layout.
        rf_jump: input pixels between neighbouring output units (cumulative stride); None idem.
        rf_start: input coordinate of the centre of output unit 0's field (pixel i's centre is
            at i); None idem.
        parameters: number of parameters of this module (trainable or not).
        has_kernels: it has convolution kernels (a Conv layer).
        rf_known: False when the layer has a spatial layout but its receptive field is unknown
            (conv/pool arithmetic does not apply: ``models.traced``); the rf_* are then None.
    """

    name: str
    aliases: tuple[str, ...]
    type: str
    output_shape: tuple[int, ...]
    channels: int
    rf_size: int | None
    rf_jump: int | None
    rf_start: float | None
    parameters: int
    has_kernels: bool
    rf_known: bool = True


@dataclass(frozen=True)
class _Field:
    """Receptive field of one spatial dimension (height; the served models are square)."""

    size: int
    jump: int
    start: float

    def through(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> _Field:
        return _Field(
            size=self.size + (kernel - 1) * dilation * self.jump,
            jump=self.jump * stride,
            start=self.start + ((kernel - 1) / 2 * dilation - padding) * self.jump,
        )


def conv_output_size(
    n: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output length of a conv/pool along one dimension of length ``n`` (PyTorch's rule).

    With ``ceil_mode`` the last window may start in the right padding but not beyond the input:
    PyTorch drops it if it would start at or after ``n + padding``.

    Raises:
        ValueError: the window does not fit (output would be empty).
    """
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        raise ValueError(
            f"input of size {n} is too small for kernel {kernel} (dilation {dilation}, padding {padding})"
        )
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _leaves(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Leaf modules in forward order. Only Sequential containers have a known order."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if not any(True for _ in child.children()):
            yield path, child
        elif isinstance(child, nn.Sequential):
            yield from _leaves(child, f"{path}.")
        else:
            raise TypeError(
                f"layer_catalogue needs nested nn.Sequential containers; {path or 'the model'} is a "
                f"{type(child).__name__} whose forward order is unknown"
            )


def layer_catalogue(
    module: nn.Module, input_shape: tuple[int, ...], aliases: Mapping[str, str]
) -> list[LayerInfo]:
    """Catalogue every leaf module of a sequential model at a given input shape.

    Works on modules on any device, including "meta" (nothing is computed).

    Args:
        module: an nn.Sequential (nested Sequentials allowed) of supported leaf modules.
        input_shape: (C, H, W) of one input sample, pixels.
        aliases: alias -> module path; each layer lists the aliases that point at it.

    Returns:
        One LayerInfo per leaf module, in forward order.

    Raises:
        TypeError: a container other than Sequential, or a leaf type the arithmetic does not know.
        ValueError: the input shape does not fit a layer (e.g. a Linear's in_features).
    """
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"layer_catalogue needs an nn.Sequential, got {type(module).__name__}")
    by_path: dict[str, list[str]] = {}
    for alias, path in aliases.items():
        by_path.setdefault(path, []).append(alias)

    shape: tuple[int, ...] = tuple(int(d) for d in input_shape)
    field: _Field | None = _Field(size=1, jump=1, start=0.0) if len(shape) == 3 else None
    layers: list[LayerInfo] = []
    for path, layer in _leaves(module):
        shape, field = _step(path, layer, shape, field)
        layers.append(
            LayerInfo(
                name=path,
                aliases=tuple(by_path.get(path, ())),
                type=type(layer).__name__,
                output_shape=shape,
                channels=shape[0],
                rf_size=field.size if field else None,
                rf_jump=field.jump if field else None,
                rf_start=field.start if field else None,
                parameters=sum(p.numel() for p in layer.parameters()),
                has_kernels=isinstance(layer, nn.Conv2d | nn.Conv1d | nn.Conv3d),
            )
        )
    return layers


def _step(
    path: str, layer: nn.Module, shape: tuple[int, ...], field: _Field | None
) -> tuple[tuple[int, ...], _Field | None]:
    """Output shape and receptive field of ``layer`` given its input's."""
    if isinstance(layer, POINTWISE):
        return shape, field
    if isinstance(layer, nn.Conv2d):
        _expect_spatial(path, layer, shape, layer.in_channels)
        kernel, stride, dilation = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.dilation)
        if layer.padding == "same":  # PyTorch pads D(K-1) in total, the smaller half first
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
            out = shape[1:]
        else:
            padding = (0, 0) if isinstance(layer.padding, str) else _pair(layer.padding)  # str: "valid"
            out = tuple(
                conv_output_size(n, k, s, p, d)
                for n, k, s, p, d in zip(shape[1:], kernel, stride, padding, dilation, strict=True)
            )
        return (layer.out_channels, *out), _through(field, kernel, stride, padding, dilation)
    if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
        _expect_spatial(path, layer, shape)
        kernel = _pair(layer.kernel_size)
        stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        padding = _pair(layer.padding)
        dilation = _pair(layer.dilation) if isinstance(layer, nn.MaxPool2d) else (1, 1)
        out = tuple(
            conv_output_size(n, k, s, p, d, layer.ceil_mode)
            for n, k, s, p, d in zip(shape[1:], kernel, stride, padding, dilation, strict=True)
        )
        return (shape[0], *out), _through(field, kernel, stride, padding, dilation)
    if isinstance(layer, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        _expect_spatial(path, layer, shape)
        size = layer.output_size
        wanted = (size, size) if size is None or isinstance(size, int) else tuple(size)  # None: keep
        out = tuple(n if w is None else int(w) for n, w in zip(shape[1:], wanted, strict=True))
        return (shape[0], *out), _adaptive_field(field, shape[1], out[0])
    if isinstance(layer, nn.Flatten):
        full = (1, *shape)  # Flatten's dims count the batch dimension
        start, end = layer.start_dim % len(full), layer.end_dim % len(full)
        if start == 0:
            raise ValueError(f"{path}: Flatten(start_dim=0) would merge the batch dimension")
        flat = math.prod(full[start : end + 1])
        new = (*full[1:start], flat, *full[end + 1 :])
        return new, field if len(new) == 3 else None
    if isinstance(layer, nn.Linear):
        if shape[-1] != layer.in_features:
            raise ValueError(f"{path}: Linear expects {layer.in_features} input features, gets shape {shape}")
        return (*shape[:-1], layer.out_features), None
    raise TypeError(f"{path}: no shape arithmetic for {type(layer).__name__} (extend models.catalogue._step)")


def _expect_spatial(path: str, layer: nn.Module, shape: tuple[int, ...], channels: int | None = None) -> None:
    if len(shape) != 3:
        raise ValueError(f"{path}: {type(layer).__name__} needs a (C, H, W) input, gets shape {shape}")
    if channels is not None and shape[0] != channels:
        raise ValueError(f"{path}: {type(layer).__name__} expects {channels} input channels, gets {shape[0]}")


def _through(
    field: _Field | None,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> _Field | None:
    if field is None:
        return None
    return field.through(kernel[0], stride[0], padding[0], dilation[0])


def _adaptive_field(field: _Field | None, n_in: int, n_out: int) -> _Field | None:
    """An adaptive pool's field: identity when sizes match, a plain pool when they divide evenly.

    Otherwise PyTorch's bins (floor(i*n/m) .. ceil((i+1)*n/m)) have unequal sizes and strides,
    so no single (r, j, s) describes the units: None.
    """
    if field is None:
        return None
    if n_in == n_out:
        return field
    if n_in % n_out == 0:
        k = n_in // n_out
        return field.through(k, k, 0)
    return None
