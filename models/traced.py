"""Layer catalogue of any module tree, from one forward pass with hooks on every submodule.

``models.catalogue.layer_catalogue`` needs nested ``nn.Sequential`` containers, whose forward order
is their child order. A general module (a ResNet, a TorchScript or ``torch.export`` program rebuilt
as Python modules) has no such order, so this catalogue runs one forward of a blank input with a
forward hook on every submodule and lists each module in the order its forward *finished*
(children before the block that contains them), with the output shape it produced.

Receptive fields follow the tensors: the input has r = 1, j = 1, s = 0; a leaf module whose
arithmetic is known (``models.catalogue``: conv, pool, pointwise) maps its input tensor's field to
its output's. A tensor made by functions between modules (a residual addition, ``torch.flatten``)
takes the largest field among the tensors of the same spatial size made before it: for residual
blocks that is the longest path, as the receptive-field literature counts it. A leaf of a type the
arithmetic does not know (a TorchScript leaf, an exported graph's module) makes its output's field
unknown, and so every field computed from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.catalogue import LayerInfo, _Field, _step


@dataclass
class _Record:
    order: int
    output_shape: tuple[int, ...]
    field: _Field | None
    known: bool


class _Tracer:
    """Fields of the tensors seen during one forward, by identity (the tensors are kept alive)."""

    def __init__(self, root_input: Tensor) -> None:
        first = _Field(size=1, jump=1, start=0.0)
        self.alive: list[Tensor] = [root_input]
        self.fields: dict[int, _Field | None] = {id(root_input): first}
        self.by_size: list[tuple[tuple[int, ...], _Field | None]] = [(tuple(root_input.shape[2:]), first)]

    def field_of(self, tensor: Tensor) -> _Field | None:
        """A tensor's field if it was seen; else the largest of its spatial size (None if any is unknown)."""
        if id(tensor) in self.fields:
            return self.fields[id(tensor)]
        same = [field for size, field in self.by_size if size == tuple(tensor.shape[2:])]
        if tensor.dim() != 4 or not same or any(field is None for field in same):
            return None
        return max((field for field in same if field is not None), key=lambda f: f.size)

    def record(self, tensor: Tensor, field: _Field | None) -> None:
        self.alive.append(tensor)
        self.fields[id(tensor)] = field
        if tensor.dim() == 4:
            self.by_size.append((tuple(tensor.shape[2:]), field))


def _first_tensor(value: object) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def traced_catalogue(
    module: nn.Module,
    input_shape: tuple[int, ...],
    aliases: Mapping[str, str],
    type_names: Mapping[str, str] | None = None,
) -> tuple[list[LayerInfo], Tensor]:
    """Catalogue every submodule of ``module`` that runs in a forward of a blank (zeros) input.

    Args:
        module: any module taking (1, *input_shape); run once in eval mode without gradients.
        input_shape: (C, H, W) of one sample.
        aliases: alias -> module path; each layer lists the aliases pointing at it.
        type_names: module path -> type to report instead of the class name (e.g. a TorchScript
            leaf's original class).

    Returns:
        (one LayerInfo per submodule that ran, in the order its forward finished; the output of
        the blank forward). A module run twice (a shared ReLU) is listed once, at its last run.

    Raises:
        Exception: whatever the forward raises (e.g. the input shape does not fit).
    """
    names = {id(sub): path for path, sub in module.named_modules() if path}
    # A leaf: no child that takes hooks (a TorchScript leaf's wrapper counts as one).
    leaves = {
        path
        for path, sub in module.named_modules()
        if path and all(isinstance(child, torch.jit.ScriptModule) for child in sub.children())
    }
    x = torch.zeros((1, *input_shape))
    tracer = _Tracer(x)
    records: dict[str, _Record] = {}
    counter = [0]

    def hook(sub: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        path = names[id(sub)]
        out = _first_tensor(output)
        inp = _first_tensor(inputs)
        if out is None:
            return
        field: _Field | None
        known = True
        if path in leaves:
            before = tracer.field_of(inp) if inp is not None else None
            try:
                _shape, field = _step(path, sub, tuple(inp.shape[1:]) if inp is not None else (), before)
            except (TypeError, ValueError):
                field, known = None, False
            if before is None and inp is not None and inp.dim() == 4:
                known = False  # computed from a tensor whose field is unknown
        else:
            field = tracer.field_of(out)
        if out.dim() != 4:
            field, known = None, True  # no spatial layout: no field to know
        elif field is None:
            known = False
        tracer.record(out, field)
        counter[0] += 1
        records[path] = _Record(counter[0], tuple(int(d) for d in out.shape[1:]), field, known)

    # TorchScript modules take no Python hooks (models.own wraps each scripted leaf in one that does).
    hookable = [sub for path, sub in module.named_modules() if path and not isinstance(sub, torch.jit.ScriptModule)]
    handles = [sub.register_forward_hook(hook) for sub in hookable]
    try:
        with torch.no_grad():
            output = module(x)
    finally:
        for handle in handles:
            handle.remove()
    by_path: dict[str, list[str]] = {}
    for alias, path in aliases.items():
        by_path.setdefault(path, []).append(alias)
    submodules = dict(module.named_modules())
    layers = []
    for path, record in sorted(records.items(), key=lambda item: item[1].order):
        sub = submodules[path]
        field = record.field
        layers.append(
            LayerInfo(
                name=path,
                aliases=tuple(by_path.get(path, ())),
                type=(type_names or {}).get(path, type(sub).__name__),
                output_shape=record.output_shape,
                channels=record.output_shape[0] if record.output_shape else 0,
                rf_size=field.size if field else None,
                rf_jump=field.jump if field else None,
                rf_start=field.start if field else None,
                parameters=sum(p.numel() for p in sub.parameters()),
                has_kernels=isinstance(sub, nn.Conv2d | nn.Conv1d | nn.Conv3d),
                rf_known=record.known,
            )
        )
    return layers, output
