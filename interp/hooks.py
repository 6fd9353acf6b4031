"""Forward hooks that never outlive the call, and the truncated forward pass.

``capture`` records the outputs of named submodules and, by default, stops the forward pass as
soon as the last of them has fired: the layers after the deepest requested one never run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from interp.errors import InvalidInput


class _StopForward(Exception):
    """Raised from a hook to end the forward pass once every requested layer has fired."""


def get_layer(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule at a dotted module path, or raise InvalidInput naming valid paths."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise InvalidInput(f"unknown layer {path!r}; valid layers: {', '.join(names)}") from None


@contextmanager
def capture(model: nn.Module, layers: Sequence[str], *, stop: bool = True) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of ``layers`` (module paths) during forward passes inside the block.

    With ``stop=True`` the forward pass is cut short once every requested layer has produced its
    output; run it through :func:`run_until` so the early exit is absorbed. The recorded tensors
    keep their autograd graph. Hooks are removed in ``finally``, whatever happens in the block.
    """
    if not layers:
        raise InvalidInput("at least one layer is required")
    modules = {name: get_layer(model, name) for name in layers}
    store: dict[str, Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            store[name] = output
            if stop and len(store) == len(modules):
                raise _StopForward

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def run_until(model: nn.Module, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """One forward pass that stops at the deepest of ``layers``; returns {path: output}.

    Gradients flow as usual if ``x`` (or the model) requires them.
    """
    with capture(model, layers, stop=True) as store:
        try:
            model(x)
        except _StopForward:
            pass
        missing = [name for name in layers if name not in store]
        if missing:
            raise InvalidInput(f"layers {missing} did not run in the forward pass")
        return dict(store)


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
    if not torch.isfinite(x).all():
        raise InvalidInput("input contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise InvalidInput(f"pixels must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
