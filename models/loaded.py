"""One served model and its state (READY, LOADING or UNAVAILABLE), apart from the hub that loads it.

``models.hub`` builds and keeps them; ``models.own`` makes them for models served from
configuration. Both import this module, so neither imports the other at module level.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from models.catalogue import LayerInfo
from models.errors import ModelUnavailable, UnknownLayer, shown
from models.registry import ModelSpec
from models.weights import WeightsInfo

READY = "READY"
LOADING = "LOADING"
UNAVAILABLE = "UNAVAILABLE"
log = logging.getLogger("models.hub")


def suggest(name: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or "" when none is close."""
    import difflib

    if len(name) > 100:
        return ""
    lowered = {choice.lower(): choice for choice in choices}
    containing = [choice for low, choice in lowered.items() if name and name.lower() in low]
    if len(containing) == 1:  # a part of one name ('boot' of 'Ankle boot')
        return f" (did you mean {containing[0]!r}?)"
    found = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[found[0]]!r}?)" if found else ""


class LoadedModel:
    """One served model and everything known about it.

    Attributes:
        spec: the registry entry.
        status: READY, LOADING (weights downloading) or UNAVAILABLE.
        reason: why it is UNAVAILABLE, or the download's progress while LOADING ("" when READY).
        module: the served module (eval mode, parameters with requires_grad=False, on the hub's
            device), or None when not READY. Shared between requests: never mutate it.
        weights: where the weights came from (source "" when there are none).
        layers: the layer catalogue at ``spec.input_shape``, also when UNAVAILABLE.
    """

    def __init__(
        self,
        spec: ModelSpec,
        status: str,
        reason: str,
        module: nn.Module | None,
        weights: WeightsInfo,
        layers: list[LayerInfo],
    ) -> None:
        self.spec = spec
        self.status = status
        self.reason = reason
        self.module = module
        self.weights = weights
        self.layers = layers
        self._shapes: tuple[list[LayerInfo], dict[str, tuple[int, ...]]] | None = None
        self._memory: tuple[nn.Module | None, frozenset[int]] = (None, frozenset())
        paths = {layer.name for layer in layers}
        self._names = {alias: path for alias, path in spec.aliases.items() if path in paths}
        self._names.update({path: path for path in paths})

    def settle(self, status: str, reason: str, module: nn.Module | None, weights: WeightsInfo) -> None:
        """A LOADING model's outcome; the module and weights are in place before the status says READY."""
        self.module, self.weights, self.reason = module, weights, reason
        self.status = status

    def adopt(self, loaded: LoadedModel) -> None:
        """A LOADING model from configuration takes the outcome of its load (spec and catalogue too)."""
        self.spec, self.layers = loaded.spec, loaded.layers
        self._names = dict(loaded._names)
        self.settle(loaded.status, loaded.reason, loaded.module, loaded.weights)

    def report(self, reason: str) -> None:
        """Progress of a LOADING model (its reason), e.g. "downloading, 42 % (...)"."""
        if self.status == LOADING:
            self.reason = reason

    @property
    def pretrained(self) -> bool:
        """What the model card states; else True when the weights came from a file (not random, not missing)."""
        if self.spec.pretrained is not None and self.weights.source != "random":
            return self.spec.pretrained
        return self.weights.pretrained

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each layer's per-image output shape by module path (made once per catalogue: read per call)."""
        if self._shapes is None or self._shapes[0] is not self.layers:
            self._shapes = (self.layers, {layer.name: tuple(layer.output_shape) for layer in self.layers})
        return self._shapes[1]

    @property
    def memory(self) -> frozenset[int]:
        """Where the served module's parameters and buffers live (their storages' addresses): a
        layer output found there (a layer returning a weight, or a view of one) belongs to the model
        and is never written. Made once per module."""
        if self._memory[0] is not self.module:
            module = self.module
            tensors = () if module is None else (*module.parameters(), *module.buffers())
            self._memory = (module, frozenset(t.untyped_storage().data_ptr() for t in tensors))
        return self._memory[1]

    def resolve_layer(self, name: str) -> str:
        """Module path of a layer given by alias ("conv3_1") or module path ("features.10").

        Raises:
            UnknownLayer: neither; the message lists the aliases and module paths.
        """
        try:
            return self._names[name]
        except KeyError:
            folded = {alias.lower(): path for alias, path in self._names.items()}
            if name.lower() in folded:  # names are case-insensitive, like labels
                return folded[name.lower()]
            aliases = ", ".join(a for a in self.spec.aliases if a in self._names)
            paths = ", ".join(layer.name for layer in self.layers)
            listing = f"aliases: {aliases}; module paths: {paths}" if aliases else f"module paths: {paths}"
            hint = suggest(name, list(self._names))
            note = f" ({self.spec.layers_note})" if self.spec.layers_note else ""
            raise UnknownLayer(f"{self.spec.name} has no layer {shown(name)}{hint}; {listing}{note}") from None

    def require_ready(self) -> nn.Module:
        """The served module.

        Raises:
            ModelUnavailable: the model is UNAVAILABLE; the message is the reason.
        """
        module = self.module
        if self.status == LOADING:
            raise ModelUnavailable(
                f"model {self.spec.name} is loading: {self.reason}; it serves once `interp models` shows it READY"
            )
        if self.status != READY or module is None:
            raise ModelUnavailable(f"model {self.spec.name} is unavailable: {self.reason}")
        return module

    def __repr__(self) -> str:
        return f"LoadedModel({self.spec.name!r}, {self.status}, source={self.weights.source!r})"
