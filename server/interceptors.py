"""Server interceptors: bearer-token auth (every RPC but health) and Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.errors import new_request_id, rich_status

log = logging.getLogger("interp.server")

HEALTH_PREFIX = "/grpc.health.v1.Health/"
DEADLINE_SLACK_S = 0.25  # a call that ends this close to its deadline is counted as DEADLINE_EXCEEDED


def _wrap(handler: grpc.RpcMethodHandler, wrap: Callable) -> grpc.RpcMethodHandler:
    """Return ``handler`` with its behaviour passed through ``wrap(behaviour, streaming)``."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, True), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, False), handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True), handler.request_deserializer, handler.response_serializer
    )


class _ServiceInterceptor(grpc.ServerInterceptor):
    """An interceptor of the service's own RPCs: an unknown method and the health service pass as
    they are; :meth:`_intercept` sees every other call's handler."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        return self._intercept(handler, handler_call_details)

    def _intercept(self, handler: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        raise NotImplementedError


class AuthInterceptor(_ServiceInterceptor):
    """Require ``authorization: Bearer <token>`` matching one of ``tokens`` (constant-time compare)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [t.encode() for t in tokens if t]
        if not self._tokens:
            raise ValueError("AuthInterceptor needs at least one non-empty token")

    def _allowed(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        presented = b""
        for key, value in metadata or ():
            if key.lower() == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                if text.startswith("Bearer "):
                    presented = text[len("Bearer ") :].strip().encode()
        # compare against every token, always, so timing does not reveal which (or whether one) matched
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(presented, token)
        return matched and bool(presented)

    def _intercept(self, handler: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        # grpc calls intercept_service when a call's headers arrive, before any request message is
        # read: the metadata is all there is to look at, and all that is needed. What runs on a
        # refusal is the handler returned here. Returning the method's own handler with a refusing
        # behaviour would still make grpc receive and deserialize the request first (for a unary
        # request grpc reads the message before calling the behaviour). So a refusal is a
        # request-streaming handler without a deserializer whose behaviour never reads its request
        # iterator: grpc sends UNAUTHENTICATED and resets the stream without parsing a byte of the
        # message, and receives no more of it than HTTP/2 flow control had already let in.
        # (Cardinality is not on the wire: a unary client gets its status all the same.)
        if self._allowed(handler_call_details.invocation_metadata):
            return handler
        method = handler_call_details.method
        return grpc.stream_stream_rpc_method_handler(
            lambda requests, context: refuse_unauthenticated(requests, context, method)
        )


def refuse_unauthenticated(
    request_iterator: Iterator[bytes], context: grpc.ServicerContext, method: str = ""
) -> Iterator[bytes]:
    """Abort with UNAUTHENTICATED without reading (or parsing) the request; the refusal has a
    request id, in its status and in the log with the peer (never the token presented)."""
    request_id = new_request_id()
    log.warning("request %s: %s -> UNAUTHENTICATED: missing or invalid token, from %s", request_id,
                method.rsplit("/", 1)[-1] or "?", context.peer())  # fmt: skip
    message = f"missing or invalid token: send metadata 'authorization: Bearer <token>' (request id {request_id})"
    context.abort_with_status(rich_status(grpc.StatusCode.UNAUTHENTICATED, message, request_id))
    yield b""  # never reached: abort raises; makes this a generator, as a streaming behaviour is


class Metrics:
    """Prometheus metrics of one server, in its own registry (several servers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "interp_requests", "RPCs finished, by method and status code", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "interp_request_seconds",
            "RPC wall time (streams: until the last message)",
            ["method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.in_flight = Gauge("interp_in_flight", "RPCs being handled", ["method"], registry=self.registry)
        self.heavy_running = Gauge("interp_heavy_running", "heavy RPCs computing", registry=self.registry)
        self.heavy_queued = Gauge("interp_heavy_queued", "heavy RPCs waiting for a slot", registry=self.registry)
        self.model_ready = Gauge(
            "interp_model_ready",
            "1 if the model is READY, 0 if LOADING (weights downloading) or UNAVAILABLE",
            ["model", "pretrained"],
            registry=self.registry,
        )

    def busy(self) -> int:
        """RPCs in flight (health is not counted)."""
        return int(sum(sample.value for metric in self.in_flight.collect() for sample in metric.samples))


class MetricsInterceptor(_ServiceInterceptor):
    # Health is left alone: wrapping it would also turn its non-blocking Watch into a blocking
    # generator that holds a worker thread per watcher (N unauthenticated watchers = no workers).

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # grpc asks for the handler on every call: the wrapped handler of a method (and its
        # metric children) is made once and reused while the method's handler is the same object.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def _intercept(self, handler: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        key = handler_call_details.method
        cached = self._wrapped.get(key)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap_method(handler, key.rsplit("/", 1)[-1])
        self._wrapped[key] = (handler, wrapped)
        return wrapped

    def _wrap_method(self, handler: Any, method: str) -> Any:
        m = self.metrics
        in_flight, latency = m.in_flight.labels(method), m.latency.labels(method)
        finished: dict[grpc.StatusCode, Any] = {}

        def observe(context: Any, started: float, failed: BaseException | None) -> None:
            code = context.code() if hasattr(context, "code") else None
            if code is None and failed is not None:
                code = grpc.StatusCode.UNKNOWN
            elif code is None and not context.is_active():
                # The handler returned quietly because the client went away or its deadline passed.
                # The client's own timer fires first, so its cancel arrives shortly before our deadline.
                remaining = context.time_remaining()
                expired = remaining is not None and remaining <= DEADLINE_SLACK_S
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            elif code is None:
                code = grpc.StatusCode.OK
            if not isinstance(code, grpc.StatusCode):
                code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
            counter = finished.get(code)
            if counter is None:
                counter = finished[code] = m.requests.labels(method, code.name)
            counter.inc()
            latency.observe(time.perf_counter() - started)
            in_flight.dec()

        def wrap(behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
            if streaming:

                def stream(request: Any, context: Any) -> Iterator[Any]:
                    started, failed = time.perf_counter(), None
                    in_flight.inc()
                    try:
                        yield from behaviour(request, context)
                    except Exception as exc:  # not GeneratorExit: a stream the client abandoned
                        failed = exc
                        raise
                    finally:
                        observe(context, started, failed)

                return stream

            def unary(request: Any, context: Any) -> Any:
                started, failed = time.perf_counter(), None
                in_flight.inc()
                try:
                    return behaviour(request, context)
                except Exception as exc:
                    failed = exc
                    raise
                finally:
                    observe(context, started, failed)

            return unary

        return _wrap(handler, wrap)
