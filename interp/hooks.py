"""Forward hooks that never outlive the call, and the truncated forward pass.

``capture`` records the outputs of named submodules and, by default, stops the forward pass as
soon as the last of them has fired: the layers after the deepest requested one never run.

Served modules are shared by concurrent requests. A hook registered on a shared module fires for
every thread's forward pass, so ``capture``'s hooks only act on the thread that registered them.
Methods that must register hooks they do not control (captum's layer and guided-backprop
attributions) run on a :func:`structural_copy` instead, which shares the weights but not the hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from torch import Tensor, nn

from interp.errors import InvalidInput

T = TypeVar("T")


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
def capture(
    model: nn.Module,
    layers: Sequence[str],
    *,
    stop: bool = True,
    reduce: Callable[[str, Tensor, tuple[Any, ...]], Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Record the outputs of ``layers`` (module paths) during forward passes inside the block.

    With ``stop=True`` the forward pass is cut short once every requested layer has produced its
    output; run it through :func:`run_until` so the early exit is absorbed. The recorded tensors
    keep their autograd graph. With ``reduce``, what is recorded is ``reduce(path, output, inputs)``,
    computed in the hook: the output itself is then free as soon as the next layer has used it,
    as in a plain forward. Hooks are removed in ``finally``, whatever happens in the block.
    """
    if not layers:
        raise InvalidInput("at least one layer is required")
    modules = {name: get_layer(model, name) for name in layers}
    store: dict[str, Any] = {}
    handles = []
    owner = threading.get_ident()

    def make_hook(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(_module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if threading.get_ident() != owner:  # another request's forward on the shared module
                return
            store[name] = output if reduce is None else reduce(name, output, inputs)
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
    return _forward_until(model, x, layers, None)


def reduce_until(
    model: nn.Module, x: Tensor, layers: Sequence[str], reduce: Callable[[str, Tensor, tuple[Any, ...]], T]
) -> dict[str, T]:
    """As :func:`run_until`, returning ``{path: reduce(path, output, inputs)}``, each computed in its hook.

    No layer output outlives the next layer's use of it, as in a plain forward pass.
    """
    return _forward_until(model, x, layers, reduce)


def _forward_until(
    model: nn.Module, x: Tensor, layers: Sequence[str], reduce: Callable[[str, Tensor, tuple[Any, ...]], Any] | None
) -> dict[str, Any]:
    walked = _walk_until(model, x, layers, reduce)
    if walked is not None:
        return walked
    with capture(model, layers, stop=True, reduce=reduce) as store:
        try:
            model(x)
        except _StopForward:
            pass
        missing = [name for name in layers if name not in store]
        if missing:
            raise InvalidInput(f"layers {missing} did not run in the forward pass")
        return dict(store)


def _plain(module: nn.Module) -> bool:
    """An ``nn.Sequential`` itself (not a subclass) with no hooks: its forward is its children in turn."""
    return type(module) is nn.Sequential and not (
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks
    )


def _walk_until(
    model: nn.Module, x: Tensor, layers: Sequence[str], reduce: Callable[[str, Tensor, tuple[Any, ...]], Any] | None
) -> dict[str, Any] | None:
    """What :func:`_forward_until` returns, computed by calling the modules of a plain Sequential
    tree in turn up to the deepest of ``layers``: no hook to register and remove, no exception to
    end the pass (a LeNet step of an iterative method is ~2.5 ms, of which those were ~4 %). None
    when a module on the way to a requested layer is not a plain Sequential, or global hooks
    exist: the caller then uses hooks, which see every forward."""
    from torch.nn.modules import module as torch_module

    if not layers:
        raise InvalidInput("at least one layer is required")
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks or not _plain(model):
        return None
    wanted = set(layers)
    through: set[str] = set()  # containers on the way to a requested layer
    for name in wanted:
        get_layer(model, name)  # InvalidInput naming the valid layers
        parts = name.split(".")
        for depth in range(1, len(parts)):
            path = ".".join(parts[:depth])
            if not _plain(model.get_submodule(path)):
                return None
            through.add(path)
    store: dict[str, Any] = {}

    def run(container: nn.Module, prefix: str, h: Tensor) -> tuple[Tensor, bool]:
        for child_name, child in container._modules.items():
            path = prefix + child_name
            given = h
            if path in through:
                h, done = run(child, path + ".", h)  # type: ignore[arg-type]
                if done:
                    return h, True
            else:
                h = child(h)  # type: ignore[misc]
            if path in wanted:
                store[path] = h if reduce is None else reduce(path, h, (given,))
                if len(store) == len(wanted):
                    return h, True
        return h, False

    run(model, "", x)
    return store


def structural_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every parameter and buffer tensor with ``model``.

    Each module is a new object with its own ``_modules``/``_parameters``/``_buffers`` and hook
    dictionaries, so hooks registered on the copy (and attribute changes such as
    ``ReLU.inplace = False``) never reach ``model`` or other threads using it; no tensor is
    copied, so it costs microseconds even for VGG16. Hooks already on ``model`` are carried over.
    A module that appears at several places in the tree is copied once (identity is kept).
    """
    memo: dict[int, nn.Module] = {}

    def copy_module(module: nn.Module) -> nn.Module:
        if id(module) in memo:
            return memo[id(module)]
        clone = module.__class__.__new__(module.__class__)
        state = dict(module.__dict__)
        for key, value in state.items():
            # Module keeps its registries (parameters, buffers, children, hooks) in dicts/sets.
            if isinstance(value, dict):
                state[key] = value.copy()
            elif isinstance(value, set):
                state[key] = set(value)
        clone.__dict__.update(state)
        memo[id(module)] = clone
        children = clone.__dict__["_modules"]
        for name, child in children.items():
            if child is not None:
                children[name] = copy_module(child)
        return clone

    return copy_module(model)


def out_of_place_relus(view: nn.Module) -> nn.Module:
    """Make the ReLUs of a structural copy out-of-place: GuidedBackprop's hooks need the input intact."""
    for module in view.modules():
        if isinstance(module, nn.ReLU) and module.inplace:
            module.inplace = False
    return view
