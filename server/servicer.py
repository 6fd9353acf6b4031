"""The interp.v1 servicer: one shared path for every RPC of the method table.

For each :class:`protos.methods.Method` the servicer gets one generated handler that
1. resolves the request's model (READY where the method computes);
2. checks this server's caps on the request (``Method.caps``: the message names the cap);
3. turns the Params message into the method's ``interp`` dataclass (an unknown field is an
   error, never dropped), resolves the model-dependent defaults and checks the caps again (a
   default above an operator's cap is refused saying so);
4. calls the per-RPC code of ``server/methods.py`` through a :class:`Ctx`, inside a capacity
   slot for heavy methods; streamed methods run on a worker thread and stream Progress events
   (a "queued" event first when the call must wait), then one result;
5. stamps the reply with the model, its weights, the request id and the elapsed time.
Errors are mapped to status codes in one place (``server/errors.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import grpc
import numpy as np
import torch
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from interp import rendering
from interp.errors import Cancelled
from models.errors import UnknownLayer, UnknownModel, shown
from models.hub import LoadedModel, ModelHub, suggest
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc as pb_grpc
from protos.methods import METHODS, Method
from server import convert
from server.batcher import Batcher, Compute
from server.capacity import CapacityGate, DecodeBudget
from server.config import Limits, ServerConfig
from server.errors import BadRequest, Overloaded, grpc_errors, item_error
from server.imaging import decode_cost, load_input, load_stack, stack_run
from server.interceptors import Metrics
from server.methods import HANDLERS, Handler, Streamed
from server.threads import largest_activation, pin, threads_for

log = logging.getLogger("interp.server")

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


class StallWatch:
    """Cancels streamed calls whose client stopped reading for longer than ``limit_s``.

    A client that reads one event and then neither reads nor cancels would otherwise hold its
    gRPC worker (and, until the work ends, its capacity slot) until the call's deadline. The
    watch thread runs only while some stream is waiting on its client.
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: dict[int, tuple[float, Call]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.cancelled = 0  # streams cancelled for not reading, for tests and operators

    def waiting(self, key: int, call: Call) -> None:
        with self._lock:
            self._since[key] = (time.monotonic(), call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="interp-stall-watch", daemon=True)
                self._thread.start()

    def resumed(self, key: int) -> None:
        with self._lock:
            self._since.pop(key, None)

    def _watch(self) -> None:
        tick = threading.Event()
        while True:
            tick.wait(min(1.0, self.limit_s / 4))
            now = time.monotonic()
            with self._lock:
                stalled = [(key, call) for key, (since, call) in self._since.items() if now - since > self.limit_s]
                for key, _ in stalled:
                    del self._since[key]
                if not self._since and not stalled:
                    self._thread = None
                    return
            for _, call in stalled:
                log.warning(
                    "request %s: the client has not read for %.0f s (stream_stall_s): cancelling the stream",
                    call.request_id,
                    self.limit_s,
                )
                self.cancelled += 1
                call.context.cancel()


class ProgressThrottle:
    """Which steps of a streamed run become Progress events: at most ``rate`` a second.

    Always sent: the first step and the last (``step == total_steps``). A step held back is kept
    as ``pending`` until a later one replaces it, so the run's end can still send its last step
    when the loop stopped early; a preview held back rides on the next event sent (with the step
    it shows), so previews arrive at the lower of their own rate and this one. ``rate`` 0 sends
    every step. Judged on ``clock`` (monotonic seconds; tests pass a fake).
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.pending: Any = None
        self._preview: tuple[int, torch.Tensor] | None = None
        self._last: float | None = None

    def admit(self, step: Any) -> tuple[Any, int, torch.Tensor | None] | None:
        """``(step, preview step, preview)`` when ``step`` (a StepEvent) is to be sent now, else None."""
        if step.preview is not None:
            self._preview = (step.step, step.preview)
        now = self.clock() if self.interval else 0.0
        if (
            self._last is None
            or not self.interval
            or now - self._last >= self.interval
            or step.step >= step.total_steps
        ):
            self._last = now
            self.pending = None
            return self._take(step)
        self.pending = step
        return None

    def flush(self) -> tuple[Any, int, torch.Tensor | None] | None:
        """The step held back last, with the latest preview (None if the last step was sent)."""
        step, self.pending = self.pending, None
        return None if step is None else self._take(step)

    def _take(self, step: Any) -> tuple[Any, int, torch.Tensor | None]:
        preview, self._preview = self._preview, None
        return (step, 0, None) if preview is None else (step, preview[0], preview[1])


class Ctx:
    """What per-RPC code gets: the servicer's state, the call, the model and small helpers."""

    def __init__(self, servicer: InterpServicer, call: Call, model: LoadedModel | None) -> None:
        self.servicer = servicer
        self.call = call
        self.hub: ModelHub = servicer.hub
        self.limits: Limits = servicer.limits
        self._model = model
        self.rpc = ""  # set by the servicer
        self.heavy = False  # a heavy batched handler: it takes the capacity slot itself, per batch
        self._arrived: Callable[[], None] = lambda: None
        self.replicas = 1  # copies of each input one forward of the method holds (SmoothGrad's samples)

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
        config = self.servicer.config
        spec, max_pixels = self.model.spec.preprocessing, self.limits.max_image_pixels
        # Admitted against the decode budget from the header, before any pixel is decoded.
        cost = decode_cost(image, spec, max_pixels)
        with self.servicer.decode_budget.reserve(cost, what, lambda: not self.should_stop(), self.call.wait_until()):
            return load_input(image, spec, max_pixels, config.device)

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
        budget = self.servicer.decode_budget
        pieces: list[Piece] = []
        errors: dict[int, pb.ItemError] = {}

        def alone(i: int) -> None:
            self.check_stop()
            what = f"images[{first + i}]"
            try:
                pieces.append(([i], self.input(images[i], what)))
            except Exception as exc:  # noqa: BLE001 - only this image's own errors are kept, others re-raised
                error = item_error(exc, what)
                if error is None:
                    raise
                errors[i] = error

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
                    x, refused = load_stack(images[i:end], spec, self.servicer.config.device)
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
        gate = self.servicer.gate
        slot = (lambda wanted: gate.slot(wanted)) if self.heavy else None

        def threaded(x: torch.Tensor, extras: Sequence[Any], should_stop: Callable[[], bool]) -> Sequence[Any]:
            with self.threads(x):  # the batch's size decides, on the thread that computes it
                return compute(x, extras, should_stop)

        batcher = self.servicer.batcher
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
        return largest_activation([i.output_shape for i in model.layers], model.spec.input_shape[1], side, images)

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
        return self.servicer.gate.slot(lambda: not self.should_stop())

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
            return self.servicer.class_set(self, class_name, what, set_size, seed)
        if not images:
            raise BadRequest(
                f"{what} set is empty: give images or (for models trained in-repo) a class name", field=f"sets.{what}"
            )
        _check_cap(f"sets.{what}", len(images), 1, self.limits.max_set_size, "max_set_size", label=f"{what} set size")
        batch = []
        for i, image in enumerate(images):
            self.check_stop()  # decoding 2 x 256 images takes a while: stop when nobody waits
            batch.append(self.input(image, f"sets.{what}[{i}]"))
        return torch.cat(batch)


def _check_cap(
    path: str, value: int, floor: int, cap: int, limit: str, *, count: bool = False, label: str = ""
) -> None:
    if not floor <= value <= cap:
        what = label or (f"number of {path}" if count else path)
        raise BadRequest(f"{what} must be in {floor}..{cap} (this server's {limit}), got {value}", field=path)


def _get(message: Message, path: str) -> tuple[bool, Any, bool]:
    """(is set, value, repeated) of ``field`` or ``params.field``; a repeated field gives its length."""
    head, _, rest = path.partition(".")
    if rest:
        message, path = getattr(message, head), rest
    descriptor = message.DESCRIPTOR.fields_by_name[path]
    if descriptor.is_repeated:
        value = getattr(message, path)
        return len(value) > 0, len(value), True
    return message.HasField(path), getattr(message, path), False


def _refuse_unknown_fields(message: Message, prefix: str) -> None:
    """A field this server's contract does not define (a newer client) is an error, never dropped."""
    numbers = sorted({item.field_number for item in UnknownFieldSet(message)})  # type: ignore[attr-defined]
    if numbers:
        name = message.DESCRIPTOR.full_name
        raise BadRequest(
            f"{name} carries field number(s) {', '.join(map(str, numbers))} that this server does not know "
            "(a client built from a newer interp.proto?); see GetServerInfo for the server's version",
            field=f"{prefix}#{numbers[0]}",
        )


def params_from_proto(message: Message, cls: type, path: str = "params") -> Any:
    """The method's dataclass from a Params message: only fields that are set; unknown ones refused.

    Unset optional fields stay at the dataclass default (None = "the model's default"), so the
    defaults live in one place: the method's own dataclass. Non-finite floats are refused.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for field, value in message.ListFields():
        if field.name not in names:
            raise BadRequest(
                f"parameter {field.name} is not understood by this server's {cls.__name__}",
                field=f"{path}.{field.name}",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(
                f"parameter {field.name} must be a finite number, got {value}", field=f"{path}.{field.name}"
            )
        kwargs[field.name] = value
    return cls(**kwargs)


class InterpServicer(pb_grpc.InterpServicer):
    """Every RPC of :data:`protos.methods.METHODS`, generated below the class from the table."""

    def __init__(
        self, config: ServerConfig, hub: ModelHub, *, metrics: Metrics | None = None, auth_required: bool = False
    ) -> None:
        self.config = config
        self.hub = hub
        self.limits = config.limits
        self.auth_required = auth_required
        self.gate = CapacityGate(self.limits.max_concurrent_heavy, self.limits.max_queued_heavy, metrics)
        # Streamed loops run on long-lived threads: a fresh thread per request would also pay for
        # a fresh OpenMP team in torch (measured 2.5x per LeNet step with 2 torch threads). One
        # thread per gRPC worker, so a submission never waits here: admission is the gate's job.
        self._workers = ThreadPoolExecutor(
            config.worker_threads, thread_name_prefix="interp-work", initializer=pin(torch.get_num_threads())
        )
        self.stalls = StallWatch(self.limits.stream_stall_s)
        self.decode_budget = DecodeBudget(self.limits.decode_budget_bytes, clock=time.perf_counter)
        self.batcher = Batcher(self.limits.batch_max_size, self.limits.batch_delay_ms / 1000.0)
        self._datasets: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # training sets, read once
        self._datasets_lock = threading.Lock()

    # -- the shared path -------------------------------------------------------------------------

    def prepare(self, method: Method, handler: Handler, request: Message, call: Call) -> tuple[Ctx, Any]:
        """Model, caps, params: everything before the per-RPC code runs."""
        model = None
        if handler.model != "none":
            try:
                model = self.hub.get(request.model)  # type: ignore[attr-defined]
            except UnknownModel as exc:
                exc.field = "model"  # type: ignore[attr-defined]
                raise
            if handler.model == "ready":
                model.require_ready()
        ctx = Ctx(self, call, model)
        _refuse_unknown_fields(request, "")
        if method.params is not None:
            _refuse_unknown_fields(getattr(request, method.params), f"{method.params}.")
        self._check_caps(method, request)
        params = None
        if method.params is not None and handler.params is not None:
            params = params_from_proto(getattr(request, method.params), handler.params, method.params)
            if handler.resolve is not None and model is not None:
                params = handler.resolve(params, model, request)
            applies = handler.applies(request) if handler.applies is not None else None
            self._check_caps(method, request, params, applies)
        return ctx, params

    def _check_caps(
        self, method: Method, request: Message, resolved: Any = None, applies: Sequence[str] | None = None
    ) -> None:
        """This server's caps, judged before the method's own (wider) ranges so the message names them.

        Called before the params are resolved (a value the client set is judged against the
        cap) and again with ``resolved`` (a model default above an operator's cap is refused,
        saying it is a default).
        """
        for path, cap in method.caps.items():
            limit = getattr(self.limits, cap.limit)
            present, value, repeated = _get(request, path)
            if resolved is None:
                if present:
                    _check_cap(path, value, cap.floor, limit, cap.limit, count=repeated)
                continue
            head, _, name = path.partition(".")
            if present or not name or head != method.params or (applies is not None and name not in applies):
                continue
            default = getattr(resolved, name, None)
            if default is not None and not cap.floor <= default <= limit:
                raise BadRequest(
                    f"the default {name} ({default}) is above this server's limit {cap.limit}={limit}: "
                    f"set {name} to at most {limit}",
                    field=path,
                )

    def unary(self, method: Method, handler: Handler, request: Message, call: Call) -> Message:
        ctx, params = self.prepare(method, handler, request, call)
        ctx.rpc, ctx.heavy = method.rpc, method.heavy and handler.batched
        if handler.batched and ctx._model is not None:
            # Counted as on its way to the batcher while it decodes: a batch waits for it (at
            # most the batch delay) rather than starting without it.
            with self.batcher.arriving((method.rpc, ctx.model.spec.name)) as arrived:
                ctx._arrived = arrived
                reply = handler.fn(ctx, request, params)
        elif method.heavy:
            with self.gate.slot(lambda: not call.should_stop()):
                reply = handler.fn(ctx, request, params)
        else:
            reply = handler.fn(ctx, request, params)
        self._stamp(reply, ctx)
        return reply

    def stream(self, method: Method, handler: Handler, request: Message, call: Call) -> Iterator[Message]:
        ctx, params = self.prepare(method, handler, request, call)
        work: Streamed = handler.fn(ctx, request, params)
        event_cls = method.event
        if event_cls is None:
            raise RuntimeError(f"{method.rpc} is not streamed")
        key = id(call)
        every_step = bool(getattr(request, "every_step", False))
        throttle = ProgressThrottle(0.0 if every_step else self.limits.progress_events_per_s)
        for item in self._run_streamed(call, work, throttle):
            if isinstance(item, pb.Progress):
                message = event_cls(progress=item)
            else:
                self._stamp(item, ctx)
                message = event_cls(result=item)
            # gRPC holds this generator inside the yield until the client takes the message
            # (flow control): the watch cancels a call that stays there too long.
            self.stalls.waiting(key, call)
            try:
                yield message
            finally:
                self.stalls.resumed(key)

    @staticmethod
    def _stamp(reply: Message, ctx: Ctx) -> None:
        if "stamp" not in reply.DESCRIPTOR.fields_by_name or ctx._model is None:
            return
        model = ctx._model
        reply.stamp.CopyFrom(  # type: ignore[attr-defined]
            pb.ModelStamp(
                model=model.spec.name,
                pretrained=model.pretrained,
                weights_sha256=model.weights.sha256,
                request_id=ctx.call.request_id,
                elapsed_ms=ctx.call.elapsed_ms(),
            )
        )

    def _run_streamed(self, call: Call, work: Streamed, throttle: ProgressThrottle) -> Iterator[Message]:
        """Run the loop on a worker thread; yield Progress messages, then the finished result.

        ``throttle`` picks the steps that are sent (the first, the last, those with a preview and
        at most its rate a second of the others); a step held back costs no message at all.

        The loop checks ``should_stop`` every step, so a cancelled or expired call ends the work
        itself (not just the stream) within one step. Every wait is bounded: a progress event
        waits for queue space only while the call is live, and the end marker never waits (the
        stream side also polls the worker's ``done`` flag).
        """
        events: queue.Queue[pb.Progress | None] = queue.Queue(maxsize=64)
        done = threading.Event()
        outcome: dict[str, object] = {}

        def publish(progress: pb.Progress) -> None:
            # A client that reads slowly holds the loop back (every step's event arrives, in
            # order); one that stops reading is cancelled by the stall watch, and then the
            # bounded waits here end with should_stop().
            while not call.should_stop():
                try:
                    events.put(progress, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def on_step(step: Any) -> None:
            due = throttle.admit(step)
            if due is not None:
                send(*due)

        def send(step: Any, preview_step: int, preview: torch.Tensor | None) -> None:
            png = b""
            if preview is not None:
                png = rendering.encode_png(rendering.image_grid(preview.detach().cpu()))
            publish(
                pb.Progress(
                    step=step.step,
                    total_steps=step.total_steps,
                    objective=float(step.objective),
                    elapsed_s=float(step.elapsed_s),
                    stage=step.stage,
                    preview_png=png,
                    preview_step=preview_step,
                )
            )

        def queued(position: int) -> None:
            publish(pb.Progress(stage="queued" if position else "", queued_position=position))

        def run() -> None:
            thread = threading.current_thread()
            idle_name, thread.name = thread.name, f"interp-{call.request_id}"  # who is busy, for operators
            try:
                with self.gate.slot(lambda: not call.should_stop(), on_queued=queued), threads_for(work.elements):
                    outcome["result"] = work.run(on_step, call.should_stop)
                    last = throttle.flush()  # a loop that ended early: its last step still reported
                    if last is not None:
                        send(*last)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the servicer thread
                outcome["error"] = exc
            finally:
                thread.name = idle_name
                done.set()
                try:
                    events.put_nowait(None)  # wakes the stream at once; if full, it polls `done`
                except queue.Full:
                    pass

        worker = self._workers.submit(run)
        try:
            while True:
                try:
                    item = events.get(timeout=0.1)
                except queue.Empty:
                    if done.is_set() and events.empty():
                        break
                    continue
                if item is None:
                    break
                yield item
        finally:
            # A client gone mid-stream closes this generator: the loop sees should_stop() and ends.
            worker.result()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        if "result" in outcome:
            yield work.finish(outcome["result"])

    # -- server-side data ------------------------------------------------------------------------

    def mean_image(self, model: LoadedModel, size: int) -> torch.Tensor:
        """The start image of ``start_from_mean``: (C, size, size) in [0, 1].

        A model trained in-repo: the mean of its training set's images (read once). Others
        (ImageNet models): their normalization's mean colour, the mean of ImageNet's pixels.
        """
        import torch.nn.functional as F

        dataset = model.spec.training_dataset
        if dataset is None:
            mean = torch.tensor(model.spec.preprocessing.mean, dtype=torch.float32)
            return mean.view(-1, 1, 1).expand(len(mean), size, size).clone()
        images = self._training_set(dataset)[0]
        mean = torch.from_numpy(images.mean(axis=0, dtype=np.float64).astype(np.float32) / 255.0)
        mean = mean[None, None] if mean.dim() == 2 else mean.permute(2, 0, 1)[None]
        if mean.shape[-1] != size:
            mean = F.interpolate(mean, size=(size, size), mode="bilinear", align_corners=False)
        return mean[0]

    def _training_set(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        from models.datasets import load_dataset

        with self._datasets_lock:
            if dataset not in self._datasets:
                self._datasets[dataset] = load_dataset(dataset, "train", download=False)
            return self._datasets[dataset]

    def class_set(self, ctx: Ctx, class_name: str, what: str, set_size: int, seed: int) -> torch.Tensor:
        """``set_size`` images of a class drawn (seeded) from the model's training set."""
        model = ctx.model
        dataset = model.spec.training_dataset
        if dataset is None:
            trained = [m.spec.name for m in self.hub.all() if m.spec.training_dataset] or ["none served"]
            raise BadRequest(
                f"{what}: class-name sets need a model trained in this repo ({', '.join(trained)}); "
                f"for {model.spec.name} pass images",
                field=f"sets.{what}_class",
            )
        index = ctx.label_index(class_name, field=f"sets.{what}_class")
        images, labels = self._training_set(dataset)
        candidates = np.flatnonzero(labels == index)
        rng = np.random.default_rng(seed)
        chosen = rng.choice(candidates, size=min(set_size, len(candidates)), replace=False)
        batch = torch.from_numpy(images[np.sort(chosen)].astype(np.float32) / 255.0).unsqueeze(1)
        return batch.to(self.config.device)


def _rpc_handler(method: Method) -> Callable[..., Any]:
    """The servicer method for one table entry: unary or streaming, errors mapped by grpc_errors."""
    handler = HANDLERS[method.rpc]

    if method.streamed:

        def streamed(self: InterpServicer, request: Message, context: grpc.ServicerContext, *, request_id: str):  # type: ignore[no-untyped-def]
            call = Call(context, request_id, self.limits.default_deadline_s)
            yield from self.stream(method, handler, request, call)

        fn: Callable[..., Any] = streamed
    else:

        def unary(self: InterpServicer, request: Message, context: grpc.ServicerContext, *, request_id: str) -> Message:
            call = Call(context, request_id, self.limits.default_deadline_s)
            return self.unary(method, handler, request, call)

        fn = unary
    fn.__name__ = fn.__qualname__ = method.rpc
    return grpc_errors(fn)


def _install() -> None:
    missing = [m.rpc for m in METHODS if m.rpc not in HANDLERS]
    if missing:
        raise RuntimeError(f"method table entries without a handler in server/methods.py: {', '.join(missing)}")
    for method in METHODS:
        setattr(InterpServicer, method.rpc, _rpc_handler(method))


_install()

__all__ = ["Call", "Ctx", "InterpServicer", "ProgressThrottle", "params_from_proto", "suggest"]
