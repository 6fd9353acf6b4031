"""The loaded models a server serves: built, weights resolved, frozen, each READY, LOADING or UNAVAILABLE.

A model whose weights are missing or refused is UNAVAILABLE with the reason, and the others keep
serving. A model whose weights must be downloaded is LOADING (reason "downloading, N % (...)")
while a background thread fetches them, then READY or UNAVAILABLE; the others serve meanwhile.
Its layer catalogue is always known (computed from the architecture on the meta device), so
DescribeModel works for every registered model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from models.catalogue import LayerInfo, layer_catalogue
from models.errors import UnknownModel, WeightsError, WeightsNotFound, shown
from models.loaded import LOADING, READY, UNAVAILABLE, LoadedModel, suggest
from models.registry import ModelSpec, get_spec, list_models
from models.weights import WeightsInfo, WeightsOptions, build_module, needs_download, resolve_weights

log = logging.getLogger(__name__)


def load_model(spec: ModelSpec, options: WeightsOptions, device: str = "cpu") -> LoadedModel:
    """Build ``spec``, resolve and load its weights; UNAVAILABLE (not an exception) if that fails."""
    return LoadedModel(spec, *_load(spec, options, device), _layers(spec))


def _layers(spec: ModelSpec) -> list[LayerInfo]:
    with torch.device("meta"):
        return layer_catalogue(spec.build(), spec.input_shape, spec.aliases)


_NONE = WeightsInfo(source="", path="", sha256="", canonical_name="")


def _no_weights(spec: ModelSpec) -> WeightsInfo:
    return WeightsInfo(source="", path="", sha256="", canonical_name=spec.weights.canonical_name)


def _load(
    spec: ModelSpec,
    options: WeightsOptions,
    device: str,
    report: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[str, str, nn.Module | None, WeightsInfo]:
    """(status, reason, module, weights) of ``spec``: READY or UNAVAILABLE, never raising for weights."""
    none = _no_weights(spec)
    try:
        state, info = resolve_weights(spec, options, report=report, cancel=cancel)
    # Weights not found: debug only, the status carries the reason and whoever serves the model
    # reports it (the server logs each status change once; a job's error says it).
    except WeightsNotFound as exc:
        log.debug("%s: UNAVAILABLE: %s", spec.name, exc)
        return UNAVAILABLE, str(exc), None, none
    except WeightsError as exc:  # a file refused (checksum, format): worth an ERROR where it is found
        log.error("%s: UNAVAILABLE, weights refused: %s", spec.name, exc)
        return UNAVAILABLE, f"weights refused: {exc}", None, none

    module = build_module(spec.build)  # the initialisation is overwritten by the state below
    module.load_state_dict(state, strict=True)  # keys and shapes already checked by resolve_weights
    del state
    module.eval().requires_grad_(False).to(device)
    if info.pretrained:
        log.info("%s: READY, weights from %s %s (sha256 %s)", spec.name, info.source, info.path, info.sha256)
    else:
        log.warning(
            "%s: READY with RANDOM weights (seed %d, pretrained=false, sha256 %s)",
            spec.name,
            options.seed,
            info.sha256,
        )
    return READY, "", module, info


class ModelHub:
    """The models a server serves, loaded once at start-up.

    Models whose weights are on this machine are loaded before the constructor returns. Models
    whose weights must be downloaded are LOADING and load in a background thread each; their
    outcome is announced to the listeners (``add_listener``). ``wait`` joins those threads and
    ``close`` abandons their downloads (no partial file is left).

    Args:
        names: models to serve, in order; None serves every registered model.
        options: where weights may come from.
        device: torch device of the served modules ("cpu").
        own: name -> (``--model`` source, card file or None) of models served from configuration
            (``models.own``), after the registered ones; each READY or UNAVAILABLE with its reason.

    Raises:
        UnknownModel: a name in ``names``, ``options.files`` or ``options.sha256`` is not registered.
        ValueError: a name in ``own`` is a registered model's.
    """

    def __init__(
        self,
        names: Sequence[str] | None,
        options: WeightsOptions,
        device: str = "cpu",
        own: Mapping[str, tuple[str, Path | None]] | None = None,
    ) -> None:
        own = dict(own or {})
        clash = sorted(set(own) & set(list_models()))
        if clash:
            raise ValueError(f"--model {', '.join(clash)}: the name of a built-in model; choose another name")
        wanted = list_models() if names is None else list(dict.fromkeys(names))
        specs = [get_spec(name) for name in wanted]
        for flag, named in (("--weights", options.files), ("--weights-sha256", options.sha256)):
            for name in [name for name in named if name not in own]:
                get_spec(name)
                if name not in wanted:
                    served = ", ".join(wanted)
                    log.warning("%s %s=... given but %s is not served (serving: %s)", flag, name, name, served)
        self.options = options
        self.device = device
        self._listeners: list[Callable[[LoadedModel], None]] = []
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._threads: list[threading.Thread] = []
        self._models: dict[str, LoadedModel] = {}
        for spec in specs:
            if needs_download(spec, options):
                starting = "downloading, 0 % (starting)"
                model = LoadedModel(spec, LOADING, starting, None, _no_weights(spec), _layers(spec))
                thread = threading.Thread(
                    target=self._load_in_background, args=(model,), name=f"interp-weights-{spec.name}", daemon=True
                )
                self._threads.append(thread)
                self._models[spec.name] = model
            else:
                self._models[spec.name] = load_model(spec, options, device)
        if own:
            from models.own import load_own_model, own_needs_download, placeholder_spec  # only when asked

            for name, (source, card) in own.items():
                if own_needs_download(source, card, options):
                    starting = "downloading, 0 % (starting)"
                    model = LoadedModel(placeholder_spec(name, source), LOADING, starting, None, _NONE, [])
                    self._models[name] = model
                    self._threads.append(
                        threading.Thread(
                            target=self._load_own_in_background,
                            args=(model, source, card, load_own_model),
                            name=f"interp-weights-{name}",
                            daemon=True,
                        )
                    )
                else:
                    self._models[name] = load_own_model(name, source, card, options, device)
        for thread in self._threads:  # after every local model is in place
            thread.start()

    def _load_in_background(self, model: LoadedModel) -> None:
        try:
            outcome = _load(model.spec, self.options, self.device, report=model.report, cancel=self._cancel)
        except Exception as exc:  # a thread must leave its model settled, whatever went wrong
            log.exception("%s: loading failed", model.spec.name)
            outcome = (UNAVAILABLE, f"loading failed: {exc!r}", None, _no_weights(model.spec))
        self._announce(model, lambda: model.settle(*outcome))

    def _load_own_in_background(
        self, model: LoadedModel, source: str, card: Path | None, load: Callable[..., LoadedModel]
    ) -> None:
        from models.own import Progress

        try:
            loaded = load(
                model.spec.name, source, card, self.options, self.device, Progress(model.report, self._cancel)
            )
        except Exception as exc:  # a thread must leave its model settled, whatever went wrong
            log.exception("%s: loading failed", model.spec.name)
            loaded = LoadedModel(model.spec, UNAVAILABLE, f"loading failed: {exc!r}", None, _NONE, [])
        self._announce(model, lambda: model.adopt(loaded))

    def _announce(self, model: LoadedModel, settle: Callable[[], None]) -> None:
        """Settle a LOADING model under the lock, then tell the listeners."""
        with self._lock:
            settle()
            listeners = list(self._listeners)
        for listener in listeners:
            listener(model)

    def add_listener(self, listener: Callable[[LoadedModel], None]) -> None:
        """Call ``listener(model)`` when a LOADING model becomes READY or UNAVAILABLE."""
        with self._lock:
            self._listeners.append(listener)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background loads; True when none is LOADING any more."""
        for thread in self._threads:
            thread.join(timeout)
        return all(model.status != LOADING for model in self._models.values())

    def close(self) -> None:
        """Abandon downloads in progress (their models end UNAVAILABLE; nothing partial is kept)."""
        self._cancel.set()

    def names(self) -> list[str]:
        """Served model names, in serving order."""
        return list(self._models)

    def all(self) -> list[LoadedModel]:
        """Every served model, READY or not."""
        return list(self._models.values())

    def get(self, name: str) -> LoadedModel:
        """A served model, READY or not.

        Raises:
            UnknownModel: not served; the message lists the served names.
        """
        model = self._models.get(name) or self._models.get(name.strip().lower())
        if model is None:
            hint = suggest(name, list(self._models))
            served = ", ".join(self._models)
            if not name:
                raise UnknownModel(f"model is required (none given); served models: {served}")
            if name.strip().lower() in list_models():  # a built-in this server was not started with
                raise UnknownModel(f"{shown(name)} is a built-in model this server was not started with "
                                   f"(--models); served models: {served}")  # fmt: skip
            raise UnknownModel(f"unknown model {shown(name)}{hint}; served models: {served}")
        return model

    def ready(self, name: str) -> LoadedModel:
        """A served model that is READY.

        Raises:
            UnknownModel: not served.
            ModelUnavailable: served but UNAVAILABLE; the message is the reason.
        """
        model = self.get(name)
        model.require_ready()
        return model
