"""Input and parameter checks shared by the methods: each raises InvalidInput naming what it got
and what is valid (the batch of pixels, the logits a model returns, class indices, numbers)."""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor

from interp.errors import InvalidInput

T = TypeVar("T")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The range of a seed (a protobuf int64)."""


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` must be an int (not a bool) in lo..hi inclusive; returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in {lo}..{hi}, got {value!r}", param=name)
    return value


def check_float(name: str, value: object, lo: float, hi: float, *, open_low: bool = False) -> float:
    """``value`` must be a finite number in [lo, hi] ((lo, hi] with ``open_low``); returns it."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if (lo < value if open_low else lo <= value) and value <= hi:
            return value
    interval = f"{'(' if open_low else '['}{lo}, {hi}]"
    raise InvalidInput(f"{name} must be a finite number in {interval}, got {value!r}", param=name)


def filled(value: T | None, name: str) -> T:
    """A parameter that the method's ``resolve`` has set. ``None`` here is a bug in the caller
    (resolved parameters never hold it), not bad user input, hence a TypeError."""
    if value is None:
        raise TypeError(f"parameter {name!r} used before its default was resolved")
    return value


def check_batch(x: Tensor, channels: int | None = None) -> None:
    """Validate a (B, C, H, W) float batch of pixels in [0, 1]; raise InvalidInput otherwise."""
    if not isinstance(x, Tensor):
        raise InvalidInput(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InvalidInput(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise InvalidInput(f"expected {channels} channels, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InvalidInput(f"expected a floating-point batch, got {x.dtype}")
    if x.numel() == 0:
        raise InvalidInput(f"empty batch, shape {tuple(x.shape)}")
    # One pass over the batch (aminmax) instead of three: NaN propagates into both results and
    # an infinity shows up as the min or max, so a non-finite extreme means a non-finite input.
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InvalidInput("input contains NaN or infinite values")
    if lo < 0.0 or hi > 1.0:
        raise InvalidInput(f"pixels must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def check_logits(logits: Tensor, batch: int) -> None:
    """Raise InvalidInput unless ``logits`` is a (batch, K) tensor, as a classifier returns."""
    if logits.dim() != 2 or logits.shape[0] != batch:
        shape = tuple(logits.shape)
        raise InvalidInput(f"expected the model to return ({batch}, K) logits, got shape {shape}")


def check_classes(name: str, classes: Tensor, batch: int, count: int | None = None) -> None:
    """``classes`` must be a (batch,) integer tensor, one class per image, each in 0..count-1
    (the range is checked only when ``count``, the model's classes, is known)."""
    if not isinstance(classes, Tensor):
        raise InvalidInput(f"{name} must be a ({batch},) integer tensor, got {type(classes).__name__}")
    if (
        classes.shape != (batch,)
        or classes.is_floating_point()
        or classes.is_complex()
        or classes.dtype == torch.bool
    ):
        raise InvalidInput(
            f"{name} must be a ({batch},) integer tensor (one class per image), "
            f"got {classes.dtype} {tuple(classes.shape)}"
        )
    if count is not None:
        check_class_range(name, classes, count)


def check_class_range(name: str, classes: Tensor, count: int) -> None:
    """Every entry of ``classes`` must be a class index in 0..count-1."""
    bad = [int(c) for c in classes if not 0 <= int(c) < count]
    if bad:
        raise InvalidInput(f"{name} classes must be in 0..{count - 1}, got {bad}")
