"""The interp.v1 servicer: one shared path for every RPC of the method table.

For each :class:`protos.methods.Method` the servicer gets one generated handler that
1. resolves the request's model (READY where the method computes);
2. checks the table's required fields, choices and which Params fields the chosen method reads
   (:mod:`server.request_checks`), then this server's caps (``Method.caps``: the message names
   the cap);
3. turns the Params message into the method's ``interp`` dataclass (an unknown field is an
   error, never dropped), resolves the model-dependent defaults and checks the caps again (a
   default above an operator's cap is refused saying so);
4. calls the per-RPC code of ``server/handlers/`` through a :class:`Ctx`, inside a capacity
   slot for heavy methods; streamed methods run on a worker thread and stream Progress events
   (a "queued" event first when the call must wait), then one result; live methods
   (``Method.live``, bidirectional) hold one slot for the stream and answer its frames, the latest
   frame winning (:meth:`InterpServicer.live`);
5. stamps the reply with the model, its weights, the request id and the elapsed time.
Request bytes that do not parse are refused by the same path (INVALID_ARGUMENT with a request id),
not by grpc's deserializer (INTERNAL and a traceback in the log): :func:`add_to_server`.
Errors carry their status code (``server/errors.py``) and are mapped by one decorator.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import torch
from google.protobuf.message import Message

from interp import rendering
from interp.errors import InvalidInput
from models.errors import UnknownModel
from models.hub import ModelHub
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc as pb_grpc
from protos.methods import METHODS, Method
from server.config import ServerConfig
from server.context import Call, Ctx, Services, check_cap
from server.errors import BadRequest, grpc_errors
from server.handlers import HANDLERS, Handler, Live, Streamed
from server.interceptors import Metrics
from server.request_checks import check_fields, field_value, params_from_proto, refuse_unknown_fields
from server.streaming import LatestWins, ProgressThrottle
from server.threads import pin, threads_for

log = logging.getLogger("interp.server")


class InterpServicer(pb_grpc.InterpServicer):
    """Every RPC of :data:`protos.methods.METHODS`, generated below the class from the table."""

    def __init__(
        self, config: ServerConfig, hub: ModelHub, *, metrics: Metrics | None = None, auth_required: bool = False
    ) -> None:
        self.services = Services.create(config, hub, metrics=metrics, auth_required=auth_required)
        # Streamed loops run on long-lived threads: a fresh thread per request would also pay for
        # a fresh OpenMP team in torch (measured 2.5x per LeNet step with 2 torch threads). One
        # thread per gRPC worker, so a submission never waits here: admission is the gate's job.
        self._workers = ThreadPoolExecutor(
            config.worker_threads, thread_name_prefix="interp-work", initializer=pin(torch.get_num_threads())
        )

    # Read-only views of the services, for operators' tools, benchmarks and tests.
    config = property(lambda self: self.services.config)
    hub = property(lambda self: self.services.hub)
    limits = property(lambda self: self.services.limits)
    gate = property(lambda self: self.services.gate)
    batcher = property(lambda self: self.services.batcher)
    decode_budget = property(lambda self: self.services.decode_budget)
    stalls = property(lambda self: self.services.stalls)

    # -- the shared path -------------------------------------------------------------------------

    def prepare(self, method: Method, handler: Handler, request: Message, call: Call) -> tuple[Ctx, Any]:
        """Model, caps, params: everything before the per-RPC code runs."""
        model = None
        if handler.model != "none":
            if not request.model:  # type: ignore[attr-defined]
                served = ", ".join(self.hub.names())
                raise BadRequest(f"model is required (none given); served models: {served}", field="model")
            try:
                model = self.hub.get(request.model)  # type: ignore[attr-defined]
            except UnknownModel as exc:
                exc.field = "model"  # type: ignore[attr-defined]
                raise
            if handler.model == "ready":
                model.require_ready()
        ctx = Ctx(self.services, call, model)
        refuse_unknown_fields(request, "")
        if method.params is not None:
            refuse_unknown_fields(getattr(request, method.params), f"{method.params}.")
        ctx.chosen, ctx.applies = check_fields(method, request, model, handler.applies)
        self._check_caps(method, request)
        params = None
        if method.params is not None and handler.params is not None:
            params = params_from_proto(getattr(request, method.params), handler.params, method.params)
            if handler.resolve is not None and model is not None:
                params = handler.resolve(params, model, request)
            self._check_caps(method, request, params, ctx.applies)
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
            present, value, repeated = field_value(request, path)
            if resolved is None:
                if present:
                    check_cap(path, value, cap.floor, limit, cap.limit, count=repeated)
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

    def live(self, method: Method, handler: Handler, requests: Iterator[Message], call: Call) -> Iterator[Message]:
        """A bidirectional live stream: the first message is checked as any request (model,
        fields), then the stream holds one capacity slot while a reader thread hands every
        message to the handler's :class:`Live` session, which keeps at most one frame waiting
        (:class:`LatestWins`). Ends when the client closes its side (after answering what waits),
        cancels, stops reading (stall watch) or sends nothing for ``stream_stall_s`` (idle)."""
        idle_s = self.limits.stream_stall_s
        first = _first_message(requests, idle_s, method.rpc)
        if not getattr(first, "model", "x"):
            raise BadRequest(f"the first {method.rpc} message must name the model; see ListModels", field="model")
        ctx, params = self.prepare(method, handler, first, call)
        ctx.rpc = method.rpc
        session: Live = handler.fn(ctx, first, params)
        waiting = LatestWins()
        key = id(call)

        def feed(message: Message) -> None:
            accepted = session.accept(message)
            if accepted is None:
                waiting.touch()
            else:
                waiting.put(*accepted)

        failed: list[BaseException] = []

        def read() -> None:
            try:
                for message in requests:
                    feed(message)
            except grpc.RpcError as exc:  # a cancelled call ends its request iterator so
                log.debug("request %s: %s request stream ended: %s", call.request_id, method.rpc, exc)
            except Exception as exc:  # noqa: BLE001 - re-raised in the stream's thread
                failed.append(exc)
            finally:
                waiting.close()

        with self.gate.slot(lambda: not call.should_stop()):
            feed(first)
            threading.Thread(target=read, name=f"interp-read-{call.request_id}", daemon=True).start()
            while not call.should_stop():
                taken = waiting.take(timeout=0.1)
                if taken is None:
                    if waiting.closed:
                        if failed:
                            raise failed[0]
                        return
                    if time.monotonic() - waiting.last_put > idle_s:
                        raise IdleStream(
                            f"{method.rpc}: no message for {idle_s:g} s (this server's stream_stall_s); stream ended"
                        )
                    continue
                reply = session.answer(*taken)
                self._stamp(reply, ctx)
                self.stalls.waiting(key, call)  # the client must read: the stall watch cancels otherwise
                try:
                    yield reply
                finally:
                    self.stalls.resumed(key)

    @staticmethod
    def _stamp(reply: Message, ctx: Ctx) -> None:
        model = ctx._model
        if model is None or "stamp" not in reply.DESCRIPTOR.fields_by_name:
            return
        stamp = reply.stamp  # type: ignore[attr-defined]
        stamp.model = model.spec.name
        stamp.pretrained = model.pretrained
        stamp.weights_sha256 = model.weights.sha256
        stamp.request_id = ctx.call.request_id
        stamp.elapsed_ms = ctx.call.elapsed_ms()
        stamp.model_source = model.spec.source

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
                    outcome["result"] = work.run(on_step=on_step, should_stop=call.should_stop)
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


class IdleStream(RuntimeError):
    """A live stream whose client sent nothing for too long."""

    grpc_status_code = grpc.StatusCode.DEADLINE_EXCEEDED


def _first_message(requests: Iterator[Message], idle_s: float, rpc: str) -> Message:
    """The first message of a request stream, waited for at most ``idle_s`` (a client that opens a
    stream and sends nothing must not hold a gRPC worker until it goes away)."""
    box: queue.Queue[tuple[Message | None, BaseException | None]] = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            box.put((next(requests, None), None))
        except Exception as exc:  # noqa: BLE001 - handed to the stream's thread
            box.put((None, exc))

    threading.Thread(target=read, name=f"interp-first-{rpc}", daemon=True).start()
    try:
        first, error = box.get(timeout=idle_s)
    except queue.Empty:
        raise IdleStream(f"{rpc}: no first message within {idle_s:g} s (this server's stream_stall_s)") from None
    if error is not None:
        raise error
    if first is None:
        raise BadRequest(f"{rpc}: the stream closed before its first message")
    return first


def _with_field(method: Method, exc: InvalidInput) -> InvalidInput:
    """``exc`` with its ``field`` named from the parameter it is about (``params.noise_level``,
    ``top_k``) when that is a field of the method's params or request; returned for ``raise``."""
    if getattr(exc, "field", None) is None and exc.param:
        params = method.params_message
        if params is not None and exc.param in params.DESCRIPTOR.fields_by_name:
            exc.field = f"{method.params}.{exc.param}"  # type: ignore[attr-defined]
        elif exc.param in method.request.DESCRIPTOR.fields_by_name:
            exc.field = exc.param  # type: ignore[attr-defined]
    return exc


class MalformedRequest:
    """What a request's bytes become when they do not parse as the method's request message."""

    __slots__ = ("error", "size")

    def __init__(self, error: str, size: int) -> None:
        self.error, self.size = error, size


def _parsed(method: Method, request: Any) -> Message:
    if isinstance(request, MalformedRequest):
        raise BadRequest(
            f"the request ({request.size} bytes) is not a valid {method.request.DESCRIPTOR.full_name} message: "
            f"{request.error}"
        )
    return request


def _tolerant(message: type[Message]) -> Callable[[bytes], Any]:
    """``message.FromString`` that hands the shared path a :class:`MalformedRequest` instead of raising."""
    parse = message.FromString

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, or whatever the parser raises
            return MalformedRequest(str(exc) or type(exc).__name__, len(data))

    return deserialize


def add_to_server(servicer: InterpServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as the generated ``add_InterpServicer_to_server`` does, with request
    bytes parsed by :func:`_tolerant`."""
    handlers = {}
    for method in METHODS:
        behaviour, parse, serialize = getattr(servicer, method.rpc), _tolerant(method.request), None
        if method.live:
            serialize = method.reply.SerializeToString
            make = grpc.stream_stream_rpc_method_handler
        elif method.streamed:
            serialize = method.event.SerializeToString  # type: ignore[union-attr]
            make = grpc.unary_stream_rpc_method_handler
        else:
            serialize = method.reply.SerializeToString
            make = grpc.unary_unary_rpc_method_handler
        handlers[method.rpc] = make(behaviour, request_deserializer=parse, response_serializer=serialize)
    service = pb.DESCRIPTOR.services_by_name["Interp"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def _rpc_handler(method: Method) -> Callable[..., Any]:
    """The servicer method for one table entry: unary or streaming, errors mapped by grpc_errors."""
    handler = HANDLERS[method.rpc]

    if method.live:

        def live(self: InterpServicer, requests: Iterator[Message], context: grpc.ServicerContext, *, request_id: str):  # type: ignore[no-untyped-def]
            # A live stream lasts as long as the client wants (or its own deadline): no default deadline.
            call = Call(context, request_id, math.inf)
            try:
                yield from self.live(method, handler, (_parsed(method, r) for r in requests), call)
            except InvalidInput as exc:
                raise _with_field(method, exc) from None

        fn: Callable[..., Any] = live
    elif method.streamed:

        def streamed(self: InterpServicer, request: Message, context: grpc.ServicerContext, *, request_id: str):  # type: ignore[no-untyped-def]
            call = Call(context, request_id, self.limits.default_deadline_s)
            try:
                yield from self.stream(method, handler, _parsed(method, request), call)
            except InvalidInput as exc:
                raise _with_field(method, exc) from None

        fn = streamed
    else:

        def unary(self: InterpServicer, request: Message, context: grpc.ServicerContext, *, request_id: str) -> Message:
            call = Call(context, request_id, self.limits.default_deadline_s)
            try:
                return self.unary(method, handler, _parsed(method, request), call)
            except InvalidInput as exc:
                raise _with_field(method, exc) from None

        fn = unary
    fn.__name__ = fn.__qualname__ = method.rpc
    return grpc_errors(fn)


def _install() -> None:
    missing = [m.rpc for m in METHODS if m.rpc not in HANDLERS]
    if missing:
        raise RuntimeError(f"method table entries without a handler in server/handlers/: {', '.join(missing)}")
    for method in METHODS:
        setattr(InterpServicer, method.rpc, _rpc_handler(method))


_install()

__all__ = ["InterpServicer", "add_to_server"]
