"""`create_server(config) -> (server, port)` and `serve()`: the interp-server process."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import cv2
import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from models.errors import UnknownModel
from models.hub import ModelHub
from models.loaded import LOADING, READY, LoadedModel
from models.weights import WeightsOptions
from protos import interp_pb2 as pb
from server.config import Limits, ServerConfig, auth_tokens, is_loopback, load_config
from server.interceptors import AuthInterceptor, Metrics, MetricsInterceptor
from server.memory import keep_freed_memory
from server.servicer import InterpServicer, add_to_server
from server.threads import pin

log = logging.getLogger("interp.server")

HEALTH_WATCH_STREAMS = 16  # concurrent health Watch streams, each on a thread of its own; more are refused

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Interp"].full_name  # "interp.v1.Interp"


class HealthServicer(health.HealthServicer):
    """grpc's health servicer, kept off the service's workers and bounded.

    Health needs no token, so what anyone can do with it must stay small: Check and Watch run on a
    thread pool of their own (a busy server still answers its health checks, and a watcher never
    holds an interp worker); at most ``streams`` Watch streams are open at once (beyond,
    RESOURCE_EXHAUSTED: poll with Check), so watchers take at most that many of
    ``--max-concurrent-rpcs``; and a Watch of a name the server does not report is NOT_FOUND
    (grpc's servicer would keep every name asked for, megabytes each, for good).
    """

    def __init__(self, streams: int = HEALTH_WATCH_STREAMS) -> None:
        super().__init__(experimental_non_blocking=False)
        self.streams = streams
        self._open = threading.BoundedSemaphore(streams)
        # Blocking Watch (the non-blocking one can deadlock set() against a watcher that is
        # closing), with threads to spare for Check and for refusing a Watch beyond the cap. The
        # pool is this servicer's own: grpc reads it from the method, so each instance gets its own
        # methods (several servers in one process do not share one pool).
        pool = futures.ThreadPoolExecutor(max_workers=streams + 4, thread_name_prefix="interp-health")
        for name, method in (("Check", self._check), ("Watch", self._watch)):
            def bound(request: Any, context: Any, *rest: Any, _method: Any = method) -> Any:
                return _method(request, context, *rest)

            bound.experimental_non_blocking = False  # type: ignore[attr-defined]
            bound.experimental_thread_pool = pool  # type: ignore[attr-defined]
            setattr(self, name, bound)

    def _check(self, request: Any, context: Any) -> Any:
        return health.HealthServicer.Check(self, request, context)

    def _watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:
        with self._lock:
            known = request.service in self._server_status
        if not known:
            context.abort(
                grpc.StatusCode.NOT_FOUND, "no such health name: '', interp.v1.Interp or interp.v1.Interp/MODEL"
            )
        if not self._open.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.streams} health Watch streams are open, the most this server keeps; poll with Check instead",
            )
        if not context.add_callback(self._open.release):  # the call has already ended
            self._open.release()
        return health.HealthServicer.Watch(self, request, context, send_response_callback)


class Server:
    """A started-or-not gRPC server with its health servicer, for graceful shutdown."""

    def __init__(
        self,
        grpc_server: grpc.Server,
        health_servicer: health.HealthServicer,
        servicer: InterpServicer,
        metrics: Metrics,
        hub: ModelHub,
    ):
        self.grpc = grpc_server
        self.health = health_servicer
        self.servicer = servicer
        self.metrics = metrics
        self.metrics_port: int | None = None
        self.hub = hub
        self._serving = False
        self._health_lock = threading.Lock()
        self.update_health()
        hub.add_listener(self.update_health)  # a download that ends, or fails, changes what is served

    def start(self) -> None:
        self.grpc.start()
        self.set_serving(True)

    def set_serving(self, serving: bool) -> None:
        """Serving (after start) or draining (NOT_SERVING everywhere, whatever the models)."""
        self._serving = serving
        self.update_health()

    def update_health(self, _changed: LoadedModel | None = None) -> None:
        """Each model's health name (``interp.v1.Interp/<model>``) is SERVING while that model is
        READY; the server's ("" and ``interp.v1.Interp``) while at least one is."""
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        with self._health_lock:
            models = self.hub.all()
            for model in models:
                ready = self._serving and model.status == READY
                self.health.set(f"{SERVICE_NAME}/{model.spec.name}", serving if ready else not_serving)
            overall = serving if self._serving and any(m.status == READY for m in models) else not_serving
            for name in ("", SERVICE_NAME):
                self.health.set(name, overall)

    def stop(self, grace: float | None) -> threading.Event:
        """Health turns NOT_SERVING first, then new RPCs are refused and in-flight ones get ``grace``.

        The grace period ends as soon as no RPC but health is in flight: health Watch streams never
        end by themselves, and grpc's own ``stop(grace)`` would wait the whole period for them.
        """
        self.set_serving(False)
        done = self.grpc.stop(grace)
        if grace:
            threading.Thread(target=self._stop_when_idle, args=(done,), name="interp-drain", daemon=True).start()
        return done

    def _stop_when_idle(self, done: threading.Event, settle_s: float = 0.2) -> None:
        idle_since: float | None = None
        while not done.wait(0.05):
            if self.metrics.busy():
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= settle_s:  # RPCs accepted just before stop() have started
                self.grpc.stop(0)  # cancels what is left: health watchers
                return

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc.wait_for_termination(timeout)


def weights_options(config: ServerConfig) -> WeightsOptions:
    return WeightsOptions(
        files=dict(config.weights),
        weights_dir=config.weights_dir,
        hub_dir=config.hub_dir,
        download=config.download_weights,
        url_base=config.weights_url_base,
        sha256=dict(config.weights_sha256),
        random=config.random_weights,
        seed=config.seed,
    )


def grpc_options(limits: Limits) -> list[tuple[str, int]]:
    """Channel arguments of the gRPC server: message size, keepalive and connection lifetime.

    A peer that vanishes without closing its connection is found by the keepalive ping; a client
    that keeps its connection open but stops reading a stream holds that stream's worker only until
    the connection's age runs out (plus the grace for RPCs in flight), or its deadline. Clients may
    ping at most every 10 s without calls in flight (grpc's default is 5 min, too strict for
    clients that keep channels warm); more pings than that end the connection.
    """

    def ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    return [
        # A port another process listens on is an error, not a port shared with it: with gRPC's
        # default SO_REUSEPORT a second server (say, one without auth) would silently take a share
        # of the connections.
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.keepalive_time_ms", ms(limits.keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", ms(limits.keepalive_timeout_s)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", ms(limits.max_connection_idle_s)),
        ("grpc.max_connection_age_ms", ms(limits.max_connection_age_s)),
        ("grpc.max_connection_age_grace_ms", ms(limits.max_connection_age_grace_s)),
    ]


def check_device(device: str) -> None:
    """SystemExit when ``--device`` names no device of this machine (torch's own error is a traceback
    from deep inside the first model's load)."""
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise SystemExit(f"interp-server: --device {device!r}: {exc}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"interp-server: --device {device}: this machine has no CUDA device torch can use; try cpu")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise SystemExit(f"interp-server: --device {device}: this machine has {count} CUDA device(s)")


def check_tls_pair(cert: Path, key: Path) -> None:
    """SystemExit with the reason when the certificate or key does not load or they do not match
    (gRPC itself only fails to bind, naming the address)."""
    import ssl

    try:
        # password b"": an encrypted key (which gRPC cannot use either) fails here instead of prompting
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            reason = "the key does not match the certificate"
        elif "PEM lib" in str(exc):
            reason = "not a PEM certificate and unencrypted PEM key (gRPC cannot use a key with a passphrase)"
        else:
            reason = str(exc)
        raise SystemExit(f"interp-server: cannot use --tls-cert {cert} with --tls-key {key}: {reason}") from None


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials, requiring and verifying client certificates when --tls-client-ca is set."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    pair = [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())]
    if config.tls_client_ca is None:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(
        pair, root_certificates=config.tls_client_ca.read_bytes(), require_client_auth=True
    )


def create_server(config: ServerConfig, hub: ModelHub | None = None) -> tuple[Server, int]:
    """Load the models and bind the server (not started). Port 0 binds a free port, returned.

    Raises:
        SystemExit: authentication would not fail closed (see ``server.config.auth_tokens``), or the
            address cannot be bound. Checked before any model is loaded.
    """
    tokens = auth_tokens(config)
    if config.tls_cert is not None and config.tls_key is not None:
        check_tls_pair(config.tls_cert, config.tls_key)
    if tokens and config.tls_cert is None:
        log.warning(
            "token auth without TLS: bearer tokens cross the network in plaintext; "
            "serve TLS (--tls-cert/--tls-key) unless every client is on this machine"
        )
    if not tokens and config.tls_client_ca is None and not is_loopback(config.host):
        log.warning("serving %s without authentication (--allow-unauthenticated): anyone who can reach it "
                    "may use it", config.address)  # fmt: skip
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    # A corrupt image is the client's error: answered with INVALID_ARGUMENT and logged with its
    # request id. OpenCV's own messages about it would reach stderr outside the log's format.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    for flag, folder in (("--weights-dir", config.weights_dir), ("--data-dir", config.data_dir)):
        if folder is not None and not Path(folder).expanduser().is_dir():
            log.warning("%s %s is not a directory: nothing will be found there", flag, folder)
    if keep_freed_memory(config.keep_freed_mb):
        log.info("malloc keeps up to %d MB of freed memory for reuse (--keep-freed-mb)", config.keep_freed_mb)
    if hub is None:
        own = {name: (spec, config.model_cards.get(name)) for name, spec in config.model_specs.items()}
        for name in sorted(set(config.model_cards) - set(config.model_specs)):
            log.warning("--model-card %s=... given but there is no --model %s=...", name, name)
        check_device(config.device)
        try:
            hub = ModelHub(config.models or None, weights_options(config), device=config.device, own=own)
        except (UnknownModel, ValueError) as exc:  # a name not registered, an own model named like a built-in
            raise SystemExit(f"interp-server: {exc.args[0] if exc.args else exc}") from None
    metrics = Metrics()

    def announce(model: LoadedModel) -> None:
        if model.status == READY:
            log.info(
                "model %s READY (pretrained=%s, weights %s %s)",
                model.spec.name,
                model.pretrained,
                model.weights.source,
                model.weights.sha256[:12],
            )
        elif model.status == LOADING:
            log.info("model %s LOADING (serving the others meanwhile): %s", model.spec.name, model.reason)
        else:
            log.warning("model %s UNAVAILABLE: %s", model.spec.name, model.reason)
        pretrained = str(model.pretrained).lower()
        # one series a model (a download that ends turns pretrained=false into true): no stale 0 left
        try:
            metrics.model_ready.remove(model.spec.name, "false" if pretrained == "true" else "true")
        except KeyError:  # prometheus-client before 0.22 raises for a series that does not exist
            pass
        metrics.model_ready.labels(model.spec.name, pretrained).set(model.status == READY)

    hub.add_listener(announce)  # before the first announcement, so a download that ends meanwhile is not missed
    for model in hub.all():
        announce(model)
    interceptors: list[grpc.ServerInterceptor] = [MetricsInterceptor(metrics)]  # counts refused calls too
    if tokens:
        interceptors.append(AuthInterceptor(tokens))
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=config.worker_threads, thread_name_prefix="interp-rpc", initializer=pin(torch.get_num_threads())
        ),
        interceptors=interceptors,
        options=grpc_options(config.limits),
        # counted by gRPC from a call's arrival (waiting for a worker included); health Watch
        # streams count too, at most HEALTH_WATCH_STREAMS of them (HealthServicer)
        maximum_concurrent_rpcs=config.limits.max_concurrent_rpcs,
    )
    servicer = InterpServicer(config, hub, metrics=metrics, auth_required=bool(tokens))
    add_to_server(servicer, grpc_server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    if config.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            grpc_server,
        )
    credentials = server_credentials(config)
    try:
        if credentials is not None:
            port = grpc_server.add_secure_port(config.address, credentials)
        else:
            port = grpc_server.add_insecure_port(config.address)
    except RuntimeError:  # grpc: "Failed to bind to address"
        port = 0
    if port == 0:
        raise SystemExit(f"interp-server: cannot listen on {config.address}: the port is in use (or not this host's)")
    server = Server(grpc_server, health_servicer, servicer, metrics, hub)
    if config.metrics_port is not None:
        from prometheus_client import start_http_server

        try:
            httpd, _thread = start_http_server(config.metrics_port, addr=config.metrics_host, registry=metrics.registry)
        except OSError as exc:
            grpc_server.stop(None)
            raise SystemExit(
                f"interp-server: cannot serve metrics on {config.metrics_host}:{config.metrics_port}: {exc.strerror}"
            ) from None
        server.metrics_port = httpd.server_port
    return server, port


def serve(config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT, then drain: NOT_SERVING, refuse new work, finish in-flight within grace."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: draining for up to %.1fs", signal.Signals(signum).name, config.grace_s)
        stopping.set()

    # Installed before the (slow) model loading, so a SIGTERM then still ends in a clean exit.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.perf_counter()
    server, port = create_server(config)
    if stopping.is_set():
        log.info("interp-server stopped before serving")
        return
    server.start()
    log.info(
        "interp-server %s listening on %s:%d%s%s (models loaded in %.1fs)",
        SERVICE_NAME,
        config.host,
        port,
        (" with mutual TLS" if config.tls_client_ca else " with TLS") if config.tls_cert else "",
        ", token auth on" if config.auth_tokens or config.auth_tokens_file else "",
        time.perf_counter() - started,
    )
    if server.metrics_port is not None:
        log.info("Prometheus metrics on http://%s:%d/metrics", config.metrics_host, server.metrics_port)
    while not stopping.wait(0.5):
        pass
    if config.drain_delay_s > 0:
        # Health pollers (load balancers) see NOT_SERVING while calls are still answered; the
        # drain's own NOT_SERVING comes with the port closing, which a poller sees as refused.
        server.set_serving(False)
        log.info("health NOT_SERVING, still serving for %.1fs (--drain-delay); a second signal ends it",
                 config.drain_delay_s)  # fmt: skip
        stopping.clear()
        stopping.wait(config.drain_delay_s)
    done = server.stop(config.grace_s)
    if not done.wait(max(0.0, config.grace_s - 0.05)):  # what is still running now is cut
        cut = server.metrics.busy()
        done.wait()
        if cut:
            log.warning("--grace %.1fs over: %d RPC(s) still running were cancelled (their clients get UNAVAILABLE)",
                        config.grace_s, cut)  # fmt: skip
    server.hub.close()  # abandon weights downloads still running (no partial file is kept)
    log.info("interp-server stopped")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (request ids are in the message)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config: ServerConfig) -> None:
    handler = logging.StreamHandler()
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> None:
    config = load_config(argv)
    setup_logging(config)
    # captum warns on every guided-backprop call that it hooks ReLUs (it removes them after);
    # the process is the server's, so it may decide that this is not news for its log.
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
    serve(config)
    # Drained, stopped and logged: leave without the interpreter's teardown, in which threads of
    # gRPC's C++ core sometimes abort the process after a clean drain ("terminate called without
    # an active exception", exit status 134, in about 3 of 10 SIGTERMs a few seconds after start),
    # which a supervisor would record as a crash.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
