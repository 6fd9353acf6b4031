"""What a handler gets: the call (:class:`Call`), the server's services (:class:`Services`) and
per-call helpers (:class:`Ctx`). Handlers see the server only through these; the servicer makes
the services once and hands a fresh :class:`Ctx` to every call.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import grpc
import torch

from interp import rendering
from interp.errors import Cancelled
from models.catalogue import LayerInfo
from models.dataset_registry import DatasetRegistry
from models.errors import UnknownLayer, shown
from models.hub import ModelHub
from models.loaded import LoadedModel, suggest
from protos import interp_pb2 as pb
from server import budgets, convert
from server import foreign_errors as _foreign_errors  # noqa: F401 - registers the status of interp/models errors
from server.batcher import Batcher, Compute
from server.capacity import CapacityGate, DecodeBudget
from server.config import Limits, ServerConfig
from server.errors import BadRequest, Overloaded, item_error
from server.imaging import decode_cost, load_input, load_stack, stack_run
from server.interceptors import Metrics
from server.stores.atlas import AtlasStore, atlas_dir
from server.stores.index import IndexStore
from server.stores.maps import MapStore
from server.stores.results import ResultsStore, results_dir
from server.stores.training_sets import TrainingSets
from server.streaming import StallWatch
from server.threads import largest_activation, threads_for

#: Inputs decoded together: the positions of the images (in the list given) and their (n, C, H, W) batch.
Piece = tuple[list[int], torch.Tensor]


class Call:
    """Per-request deadline, cancellation, request id and timing."""

    def __init__(self, context: grpc.ServicerContext, request_id: str, default_deadline_s: float) -> None:
        self.context = context
        self.request_id = request_id
        self.started = time.perf_counter()
        remaining = context.time_remaining()
        # No client deadline (or an absurd one): the server's default deadline applies.
        budget = default_deadline_s if remaining is None or remaining > default_deadline_s else remaining
        self.deadline = self.started + budget

    def should_stop(self) -> bool:
        return not self.context.is_active() or time.perf_counter() > self.deadline

    def wait_until(self) -> float:
        """When waiting for a resource gives up (perf_counter seconds): shortly before the deadline,
        so that a RESOURCE_EXHAUSTED answer reaches the client before its own deadline does."""
        return self.deadline - min(1.0, 0.1 * (self.deadline - self.started))

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


@dataclass
class Services:
    """The server-wide state handlers use, made once per servicer (:meth:`create`)."""

    config: ServerConfig
    hub: ModelHub
    gate: CapacityGate  # admission of heavy work
    batcher: Batcher  # micro-batches of concurrent single-image calls
    decode_budget: DecodeBudget  # bytes of images being decoded at once
    stalls: StallWatch  # streams whose client stopped reading
    training_sets: TrainingSets  # in-repo models' training sets, read once
    index_store: IndexStore  # activation indexes on disk
    maps: MapStore  # embedding maps in memory
    atlas: AtlasStore | None = None  # precomputed units (interp-atlas), beside the index
    results: ResultsStore | None = None  # offline robustness results (interp-robustness), beside the index
    auth_required: bool = False
    _datasets: DatasetRegistry | None = field(default=None, repr=False)
    _datasets_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def limits(self) -> Limits:
        return self.config.limits

    @property
    def datasets(self) -> DatasetRegistry:
        """What BuildIndex, TopActivations, ... can read; made on first use (an operator's image
        folder is scanned then, not while the server starts)."""
        with self._datasets_lock:
            if self._datasets is None:
                self._datasets = DatasetRegistry(
                    getattr(self.config, "datasets", {}), data_dir=getattr(self.config, "data_dir", None)
                )
            return self._datasets

    @classmethod
    def create(
        cls, config: ServerConfig, hub: ModelHub, *, metrics: Metrics | None = None, auth_required: bool = False
    ) -> Services:
        limits = config.limits
        index_store = IndexStore(getattr(config, "index_dir", None))
        return cls(
            config=config,
            hub=hub,
            gate=CapacityGate(limits.max_concurrent_heavy, limits.max_queued_heavy, metrics),
            batcher=Batcher(limits.batch_max_size, limits.batch_delay_ms / 1000.0),
            decode_budget=DecodeBudget(limits.decode_budget_bytes, clock=time.perf_counter),
            stalls=StallWatch(limits.stream_stall_s),
            training_sets=TrainingSets(getattr(config, "data_dir", None)),
            index_store=index_store,
            maps=MapStore(),
            atlas=AtlasStore(atlas_dir(index_store.root)),
            results=ResultsStore(results_dir(index_store.root)),
            auth_required=auth_required,
        )


class Ctx:
    """What per-RPC code gets: the server's services, the call, the model and small helpers."""

    def __init__(self, services: Services, call: Call, model: LoadedModel | None) -> None:
        self.services = services
        self.call = call
        self.hub: ModelHub = services.hub
        self.limits: Limits = services.limits
        self.device = services.config.device
        self._model = model
        self.rpc = ""  # set by the servicer
        self.heavy = False  # a heavy batched handler: it takes the capacity slot itself, per batch
        self._arrived: Callable[[], None] = lambda: None
        self.replicas = 1  # copies of each input one forward of the method holds (SmoothGrad's samples)
        self.chosen: dict[str, str] = {}  # the request's choice fields, defaults filled (set by the servicer)
        self.applies: tuple[str, ...] | None = None  # the Params fields this request reads (None: all)

    def choice(self, name: str) -> str:
        """The value of the choice field ``name`` (the table's ``choices``), its default when empty."""
        return self.chosen[name]

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            raise RuntimeError("this method has no model")
        return self._model

    @property
    def module(self) -> torch.nn.Module:
        return self.model.require_ready()

    def should_stop(self) -> bool:
        return self.call.should_stop()

    def check_stop(self) -> None:
        """Raise Cancelled when the client went away or the deadline passed (between work items)."""
        if self.call.should_stop():
            raise Cancelled("request stopped: cancelled by the client or past its deadline")

    def input(self, image: pb.Image, what: str = "image") -> torch.Tensor:
        if not image.WhichOneof("source"):
            raise BadRequest(
                f"{what} is required: set Image.encoded (file bytes) or Image.pixels (a tensor)", field=what
            )
        spec, max_pixels = self.model.spec.preprocessing, self.limits.max_image_pixels
        try:
            # Admitted against the decode budget from the header, before any pixel is decoded.
            cost = decode_cost(image, spec, max_pixels)
            with self.services.decode_budget.reserve(
                cost, what, lambda: not self.should_stop(), self.call.wait_until()
            ):
                return load_input(image, spec, max_pixels, self.device)
        except BadRequest as exc:  # the image's own fault: name it (``images[2]: cannot decode ...``)
            if exc.field is not None:
                raise
            raise BadRequest(str(exc) if what == "image" else f"{what}: {exc}", field=what) from None

    def inputs(self, images: Sequence[pb.Image], first: int = 0) -> tuple[list[Piece], dict[int, pb.ItemError]]:
        """Many images -> the batches of those that decode, and the ``ItemError`` of each other one.

        Returns ``(pieces, errors)``: ``pieces`` are ``(positions, x)`` in order, ``x`` the
        (len(positions), C, H, W) inputs of the images at those positions of ``images``;
        ``errors`` maps a position to its error, whose field counts from ``first``
        (``images[first + i]``, the request's own numbering). Each image gets the values
        :meth:`input` gives it alone: runs of raw-pixel images of one dtype and shape are decoded
        together (:func:`server.imaging.load_stack`: one pass over the stack instead of one per
        image), admitted against the decode budget for the sum of their costs (a run is cut so
        that it never asks for more than a quarter of the budget, and one that cannot get it
        before the deadline is decoded image by image instead, each image waiting on its own);
        every other image goes through :meth:`input`. An image's own error (INVALID_ARGUMENT,
        RESOURCE_EXHAUSTED) becomes its ``ItemError``; any other (cancellation, the deadline) is
        raised at once.
        """
        spec, max_pixels = self.model.spec.preprocessing, self.limits.max_image_pixels
        budget = self.services.decode_budget
        pieces: list[Piece] = []
        errors: dict[int, pb.ItemError] = {}

        def alone(i: int) -> None:
            self.check_stop()
            what = f"images[{first + i}]"
            try:
                pieces.append(([i], self.input(images[i], what)))
            except Exception as exc:  # noqa: BLE001 - only this image's own errors are kept, others re-raised
                error = item_error(exc)
                if error is None:
                    raise
                code, message = error
                errors[i] = pb.ItemError(code=code.value[0], code_name=code.name, message=message, field=what)

        i = 0
        while i < len(images):
            end = stack_run(images, i, spec, max_pixels)
            cost = decode_cost(images[i], spec, max_pixels) if end - i > 1 else 0
            end = min(end, i + max(1, budget.total // 4 // max(1, cost)))
            if end - i == 1:
                alone(i)
                i = end
                continue
            self.check_stop()
            what = f"images[{first + i}..{first + end - 1}]"
            try:
                with budget.reserve(cost * (end - i), what, lambda: not self.should_stop(), self.call.wait_until()):
                    x, refused = load_stack(images[i:end], spec, self.device)
            except Overloaded:
                for j in range(i, end):
                    alone(j)
                i = end
                continue
            if len(x):
                left_out = set(refused)
                pieces.append(([j for j in range(i, end) if j - i not in left_out], x))
            for j in refused:  # values outside [0, 1]: refused alone, with the message naming them
                alone(i + j)
            i = end
        return pieces, errors

    def batched(self, key: Hashable | None, x: torch.Tensor, extra: Any, compute: Compute) -> Any:
        """One image's result of ``compute``, in a batch with concurrent calls of the same key.

        ``x`` (1, C, H, W) is this call's input and ``extra`` what else ``compute`` needs of it;
        ``key`` holds everything else the computation depends on (the RPC and the model are added
        here); None computes alone. Heavy methods hold a capacity slot per batch, not per call.
        See :mod:`server.batcher`.
        """
        self._arrived()
        gate = self.services.gate
        slot = (lambda wanted: gate.slot(wanted)) if self.heavy else None

        def threaded(x: torch.Tensor, extras: Sequence[Any], should_stop: Callable[[], bool]) -> Sequence[Any]:
            with self.threads(x):  # the batch's size decides, on the thread that computes it
                return compute(x, extras, should_stop)

        batcher = self.services.batcher
        if key is None or not batcher.enabled:
            if slot is None:
                return threaded(x, [extra], self.should_stop)[0]
            with slot(lambda: not self.should_stop()):
                return threaded(x, [extra], self.should_stop)[0]
        kind = (self.rpc, self.model.spec.name)
        return batcher.run(
            kind, (kind, key), x, extra, threaded, still_wanted=lambda: not self.should_stop(), slot=slot
        )

    def elements(self, images: int, side: int) -> int:
        """The largest activation of this model over ``images`` inputs of ``side`` px (values)."""
        model = self.model
        return _largest(tuple(model.output_shapes.values()), model.spec.input_shape[1], side, images)

    def threads(self, x: torch.Tensor) -> AbstractContextManager[None]:
        """The torch threads for computing on the batch ``x`` (see :mod:`server.threads`)."""
        return threads_for(self.elements(x.shape[0] * self.replicas, max(x.shape[-2:])))

    def own_slot(self) -> AbstractContextManager[None]:
        """For a batched handler computing outside the batcher (a many-image call): the capacity
        slot a heavy method holds, for the block; no slot for light ones. The call is no longer
        counted as on its way to the batcher."""
        self._arrived()
        if not self.heavy:
            return nullcontext()
        return self.services.gate.slot(lambda: not self.should_stop())

    def layer(self, name: str, *, field: str = "layer") -> str:
        if not name:
            raise BadRequest(f"{field} is required; see DescribeModel for {self.model.spec.name}'s layers", field=field)
        try:
            return self.model.resolve_layer(name)
        except UnknownLayer as exc:
            raise BadRequest(str(exc.args[0]) if exc.args else str(exc), field=field) from None

    @staticmethod
    def layer_label(requested: str, path: str) -> str:
        """The name a user typed, with the module path when it was an alias: ``conv3_1 (features.10)``."""
        return path if requested == path else f"{requested} ({path})"

    def prediction(self, index: int, probability: float | torch.Tensor) -> pb.Prediction:
        return pb.Prediction(index=int(index), label=self.model.spec.labels[int(index)], probability=float(probability))

    @staticmethod
    def input_message(x: torch.Tensor) -> pb.PreprocessedInput:
        image = x[0].detach().cpu()
        return pb.PreprocessedInput(
            tensor=convert.tensor(image), png=rendering.encode_png(rendering.to_uint8_image(image))
        )

    def target_index(self, target: pb.Target, field: str = "target") -> int | None:
        """Target message -> class index; None when unset (the caller uses the prediction)."""
        kind = target.WhichOneof("kind")
        labels = self.model.spec.labels
        if kind == "index":
            if not 0 <= target.index < len(labels):
                raise BadRequest(
                    f"target class index {target.index} out of range 0..{len(labels) - 1}", field=f"{field}.index"
                )
            return int(target.index)
        if kind == "label":
            return self.label_index(target.label, field=f"{field}.label")
        return None

    def label_index(self, label: str, *, field: str) -> int:
        labels = self.model.spec.labels
        wanted = label.strip().lower()
        for index, name in enumerate(labels):
            if name.lower() == wanted:
                return index
        hint = suggest(label, labels)
        listing = ", ".join(labels) if len(labels) <= 20 else ", ".join(labels[:20]) + ", ... (DescribeModel lists all)"
        raise BadRequest(
            f"unknown class label {shown(label)} for {self.model.spec.name}{hint}; valid labels: {listing}",
            field=field,
        )

    def check_budget(self, what: str, answer_bytes: int) -> None:
        """Refuse, before computing, an answer that cannot fit in one message."""
        budget = self.limits.max_message_bytes
        if answer_bytes > budget:
            raise Overloaded(
                f"{what}: the answer would hold about {answer_bytes:,} bytes, above this server's message "
                f"budget max_message_bytes={budget:,}; ask for fewer layers or include_tensors=false"
            )

    def check_job(self, what: str, cost: budgets.JobCost, advice: str) -> None:
        """A dataset-level job's estimate against this server's job budgets (server/budgets.py)."""
        budgets.check(self.limits, what, cost, advice)

    def layer_info(self, path: str) -> LayerInfo:
        return next(i for i in self.model.layers if i.name == path)

    def check_work(self, what: str, *, batch: int, side: int, steps: int) -> None:
        """The combined budgets: batch x side^2 (memory) and that x steps (time)."""
        pixels = batch * side * side
        if pixels > self.limits.max_batch_pixels:
            raise Overloaded(
                f"{what}: {batch} images of {side}x{side} px in one batch ({pixels:,} pixels) is above this "
                f"server's budget max_batch_pixels={self.limits.max_batch_pixels:,}; use fewer channels, restarts "
                "or a smaller image_size"
            )
        if pixels * steps > self.limits.max_pixel_steps:
            raise Overloaded(
                f"{what}: {pixels:,} batch pixels x {steps} steps ({pixels * steps:,}) is above this server's "
                f"budget max_pixel_steps={self.limits.max_pixel_steps:,}; use fewer steps, channels or restarts"
            )

    def image_set(
        self, images: Sequence[pb.Image], class_name: str, what: str, set_size: int, seed: int
    ) -> torch.Tensor:
        if images and class_name:
            raise BadRequest(f"{what}: give either images or a class name, not both", field=f"sets.{what}")
        if class_name:
            return self.class_set(class_name, what, set_size, seed)
        if not images:
            raise BadRequest(
                f"{what} set is empty: give images or (for models trained in-repo) a class name", field=f"sets.{what}"
            )
        check_cap(f"sets.{what}", len(images), 1, self.limits.max_set_size, "max_set_size", label=f"{what} set size")
        batch = []
        for i, image in enumerate(images):
            self.check_stop()  # decoding 2 x 256 images takes a while: stop when nobody waits
            batch.append(self.input(image, f"sets.{what}[{i}]"))
        return torch.cat(batch)

    def class_set(self, class_name: str, what: str, set_size: int, seed: int) -> torch.Tensor:
        """``set_size`` images of a class drawn (seeded) from the model's training set."""
        model = self.model
        dataset = model.spec.training_dataset
        if dataset is None:
            trained = [m.spec.name for m in self.hub.all() if m.spec.training_dataset] or ["none served"]
            raise BadRequest(
                f"{what}: class-name sets need a model trained in this repo ({', '.join(trained)}); "
                f"for {model.spec.name} pass images",
                field=f"sets.{what}_class",
            )
        index = self.label_index(class_name, field=f"sets.{what}_class")
        return self.services.training_sets.class_images(dataset, index, set_size, seed).to(self.device)


@functools.lru_cache(maxsize=1024)
def _largest(shapes: tuple[tuple[int, ...], ...], native_side: int, side: int, images: int) -> int:
    """:func:`largest_activation`, remembered: every call of a small method asks it again."""
    return largest_activation(shapes, native_side, side, images)


def check_cap(path: str, value: int, floor: int, cap: int, limit: str, *, count: bool = False, label: str = "") -> None:
    if not floor <= value <= cap:
        what = label or (f"number of {path}" if count else path)
        raise BadRequest(f"{what} must be in {floor}..{cap} (this server's {limit}), got {value}", field=path)
