"""The one server configuration: every flag, its INTERP_* environment variable and every limit.

Precedence: command-line flag > environment variable > default. `GetServerInfo` reports the
limits in force, and docs/README list the same table (generated from ``OPTIONS`` below).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from server.config_pairs import REPEATABLE
from server.memory import MAX_KEEP_MB, memory_available_bytes

DECODE_BUDGET_FRACTION = 0.25
"""The default decode budget: this fraction of the container's memory (cgroup limit, else RAM)."""


def default_decode_budget_bytes() -> int:
    return int(memory_available_bytes() * DECODE_BUDGET_FRACTION)


JOB_MEMORY_FRACTION = 0.25
"""The default working-memory budget of one dataset-level job (server/budgets.py): this fraction
of the container's memory (cgroup limit, else RAM)."""


def default_job_bytes() -> int:
    return int(memory_available_bytes() * JOB_MEMORY_FRACTION)


def _gigamacs(text: str) -> int:
    """A number of multiply-adds in units of 10^9 (decimals allowed)."""
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of giga multiply-adds, got {text!r}")
    return int(value * 1e9)


def _megabytes(text: str) -> int:
    """A size in MB (10^6 bytes; decimals allowed) -> bytes."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of MB, got {text!r}")
    return int(value * 1_000_000)


@dataclass(frozen=True)
class Limits:
    """Per-request caps and capacity. Over a per-request cap -> INVALID_ARGUMENT naming the cap."""

    max_message_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # decoded width x height, checked from the header first
    max_image_side: int = 512  # iterative methods' image_size
    max_steps: int = 2048  # steps / iterations per run (per octave for DeepDream)
    max_octaves: int = 8
    max_alphas: int = 16
    max_set_size: int = 256
    max_epsilons: int = 16
    max_samples: int = 256  # smoothgrad samples / IG steps
    max_channels: int = 64  # VisualizeFilter channels per request
    max_layers: int = 64  # distinct layers per Activations request
    max_restarts: int = 8  # VisualizeFilter random starts per channel
    # Combined budgets: images in one batch x side^2 (memory), and that x steps (time).
    # 64 channels at 256 px = 4.2 M; 512 steps of 32 channels at 224 px (one VGG16 run) = 822 M.
    max_batch_pixels: int = 64 * 256 * 256
    max_pixel_steps: int = 1_000_000_000
    stream_stall_s: float = 120.0  # a stream whose client stops reading this long is cancelled
    max_concurrent_heavy: int = 2
    max_queued_heavy: int = 8
    default_deadline_s: float = 600.0
    # Connections (a client that stops reading, or vanishes, must not hold the server forever).
    max_concurrent_rpcs: int = 64  # RPCs in progress at once, health included; beyond: RESOURCE_EXHAUSTED
    keepalive_time_s: float = 60.0  # ping a connection that has been quiet this long
    keepalive_timeout_s: float = 20.0  # a ping unanswered this long closes the connection
    max_connection_idle_s: float = 900.0  # a connection with no RPC for this long is closed (GOAWAY)
    max_connection_age_s: float = 3600.0  # every connection is closed (GOAWAY) after this long ...
    max_connection_age_grace_s: float = 660.0  # ... its RPCs in flight get this long to finish, then are cut
    max_dataset_images: int = 10_000  # AttackDataset images per request
    max_index_k: int = 256  # BuildIndex k and TopActivations / NearestNeighbors k
    max_images_per_call: int = 256  # `images` per Classify / Activations / Saliency / Attack / MinimalAttack call
    progress_events_per_s: float = 20.0  # streamed calls: Progress events per second (+ first, last); 0: every step
    # Bytes decoding and preprocessing of request images may hold at once (judged from headers).
    decode_budget_bytes: int = field(default_factory=default_decode_budget_bytes)
    batch_max_size: int = 8  # micro-batching of concurrent single-image calls: largest batch (1: off)
    batch_delay_ms: float = 2.0  # ... longest wait for companions while a batch computes (0: off)
    max_embedding_points: int = 70_000  # Embedding / PlaceImages map points (limit, or the dataset size)
    max_perplexity: float = 100.0  # Embedding t-SNE perplexity
    max_place_images: int = 256  # PlaceImages images per request
    # One dataset-level job (BuildIndex, Embedding, PlaceImages, NearestNeighbors, TopActivations'
    # projections, AttackDataset), estimated from its sizes before it starts (server/budgets.py).
    max_job_bytes: int = field(default_factory=default_job_bytes)
    max_job_macs: int = 50_000 * 10**9


ZERO_MEANS_OFF = frozenset({"progress_events_per_s", "batch_delay_ms"})
"""Limits for which 0 is valid: it switches the feature off (every step sent; no batching)."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback: serving other machines is a decision (with auth, or --allow-unauthenticated)
    port: int = 50051
    models: tuple[str, ...] = ()  # empty: every registered model
    device: str = "cpu"
    weights: Mapping[str, Path] = field(default_factory=dict)  # --weights NAME=PATH
    weights_dir: Path | None = None
    hub_dir: Path | None = None  # default: torch.hub.get_dir()/checkpoints
    random_weights: bool = False
    download_weights: bool = True  # missing published weights are downloaded (--no-download: off)
    weights_url_base: str = ""  # a mirror: URL + canonical file name replaces the published URL
    weights_sha256: Mapping[str, str] = field(default_factory=dict)  # --weights-sha256 NAME=HEX (full sha256)
    seed: int = 0  # seed of --random-weights initialisation
    worker_threads: int = 8
    torch_threads: int = 0  # 0: torch's default (one per core)
    keep_freed_mb: int = 256  # freed memory glibc keeps for reuse (server/memory.py); 0: glibc's default policy
    reflection: bool = True
    grace_s: float = 10.0  # graceful shutdown: in-flight work gets this long
    drain_delay_s: float = 0.0  # on SIGTERM, health NOT_SERVING while still serving this long, then the drain
    log_level: str = "INFO"
    log_format: str = "text"  # "text" or "json" (one JSON object per line, with request ids)
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key enables TLS
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # PEM CA bundle: clients must present a certificate it signed (mTLS)
    auth_tokens: tuple[str, ...] = ()  # bearer tokens accepted; none and no file: no token auth
    auth_tokens_file: Path | None = None  # one token per line (lines starting with # are comments)
    allow_unauthenticated: bool = False  # serve a non-loopback address with neither tokens nor mTLS
    metrics_port: int | None = None  # Prometheus /metrics over HTTP; None: off, 0: a free port
    metrics_host: str = "127.0.0.1"
    datasets: Mapping[str, Path] = field(default_factory=dict)  # --dataset NAME=DIR (image folders)
    model_specs: Mapping[str, str] = field(default_factory=dict)  # --model NAME=SPEC (models.own)
    model_cards: Mapping[str, Path] = field(default_factory=dict)  # --model-card NAME=card.json
    index_dir: Path | None = None  # activation indexes; default $XDG_CACHE_HOME/cnn-interp/index
    data_dir: Path | None = None  # Fashion-MNIST's idx files; default the Debian package's directory
    limits: Limits = field(default_factory=Limits)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {text!r}")


def _url_base(text: str) -> str:
    if text.strip() and not text.strip().lower().startswith(("http://", "https://", "file:/")):
        raise argparse.ArgumentTypeError(f"expected an http://, https:// or file:/ URL, got {text!r}")
    return text.strip()


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _tokens(text: str) -> tuple[str, ...]:
    """Comma-separated tokens. A setting that holds no token at all (" , ") is an error, not "no auth"."""
    tokens = _csv(text)
    if not tokens:
        raise argparse.ArgumentTypeError(
            "holds no token; unset it to serve without tokens (which also needs --allow-unauthenticated "
            "on a non-loopback address)"
        )
    return tokens


MIN_TOKEN_LENGTH = 16  # shorter bearer tokens are refused at start: guessable, or a placeholder


class Option(NamedTuple):
    """One setting. The parser, the environment lookup and the docs read the same row."""

    flag: str
    env: str
    dest: str
    kind: Callable[[str], Any]
    text: str


def _option(flag: str, kind: Callable[[str], Any], text: str, field: str = "", group: str = "") -> Option:
    """A row whose environment variable is the flag in capitals after INTERP_, and whose config field is the
    flag in snake case unless ``field`` names it; ``group`` is the nested dataclass it sits in (``limits.``)."""
    name = flag.removeprefix("--")
    env = "INTERP_" + name.upper().replace("-", "_")
    return Option(flag, env, group + (field or name.replace("-", "_")), kind, text)


def _limit(flag: str, kind: Callable[[str], Any], text: str, field: str = "") -> Option:
    return _option(flag, kind, text, field, group="limits.")


OPTIONS: tuple[Option, ...] = (
    _option("--host", str, "address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)"),
    _option("--port", int, "port to bind; 0 picks a free one (default 50051)"),
    _option("--models", _csv, "comma-separated models to serve (default: all)"),
    _option("--device", str, "torch device, e.g. cpu or cuda:0 (default cpu)"),
    _option("--weights-dir", Path, "directory of weights files, torchvision's names"),
    _option("--hub-dir", Path, "hub checkpoints dir (default torch.hub.get_dir()/checkpoints)"),
    _option("--random-weights", _bool,
        "serve seeded random weights for models whose weights cannot be found (reported pretrained=false)"),
    _option("--download-weights", _bool,
        "download missing published weights into the hub cache, checksum-verified, while the others serve (default "
        "on; --no-download: off)"),
    _option("--weights-url-base", _url_base,
        "download weights from URL/<file name> (a mirror or object store) instead of the published URL"),
    _option("--seed", int, "seed for --random-weights (default 0)"),
    _option("--workers", int, "gRPC worker threads (default 8)", field="worker_threads"),
    _option("--torch-threads", int, "torch intra-op threads (0: torch default)"),
    _option("--keep-freed-mb", int,
        "freed memory (MB) malloc keeps for reuse instead of faulting it in again (default 256; 0: glibc default)"),
    _option("--reflection", _bool, "enable gRPC server reflection (default true)"),
    _option("--grace", float, "seconds in-flight work gets on SIGTERM (default 10)", field="grace_s"),
    _option("--drain-delay", float,
        "seconds health reports NOT_SERVING on SIGTERM while the server still serves, before the drain: "
        "time for load balancers polling health to stop sending calls (default 0; a second signal ends it)",
        field="drain_delay_s"),
    _option("--log-level", str, "logging level (default INFO)"),
    _option("--log-format", str, "text or json (default text)"),
    _option("--tls-cert", Path, "PEM certificate chain; with --tls-key serves TLS"),
    _option("--tls-key", Path, "PEM private key for --tls-cert"),
    _option("--tls-client-ca", Path,
        "PEM CA bundle; with it every client must present a certificate this CA signed (mutual TLS)"),
    _option("--auth-tokens", _tokens,
        f"comma-separated bearer tokens (at least {MIN_TOKEN_LENGTH} characters each); when set (or a file), every RPC"
        " but health needs one"),
    _option("--auth-tokens-file", Path, "file of bearer tokens, one a line; lines starting with # are comments"),
    _option("--allow-unauthenticated", _bool,
        "serve a non-loopback address without tokens or client certificates (refused otherwise)"),
    _option("--metrics-port", int, "serve Prometheus metrics on this HTTP port"),
    _option("--metrics-host", str, "address for the metrics port (default 127.0.0.1: loopback only)"),
    _option("--index-dir", Path, "directory of activation indexes (default $XDG_CACHE_HOME/cnn-interp/index)"),
    _option("--data-dir", Path,
        "directory of the Fashion-MNIST idx files, gzipped or not (default /usr/share/datasets/fashion-mnist: "
        "the Debian package dataset-fashion-mnist)"),
    _limit("--max-index-k", int, "most index entries per channel (k)"),
    _limit("--max-images-per-call", int,
        "most images per Classify / Activations / Saliency / Attack / MinimalAttack call"),
    _limit("--progress-events-per-s", float,
        "streamed calls send at most this many progress events a second, plus the first and the last (previews ride "
        "on the events sent); 0: every step (default 20)"),
    _limit("--decode-budget-mb", _megabytes,
        "MB that decoding request images may hold at once, judged from their headers; "
        f"beyond it a call waits or is refused (default {DECODE_BUDGET_FRACTION:.0%} of "
        "the cgroup memory limit, else of RAM)", field="decode_budget_bytes"),
    _limit("--batch-max-size", int,
        "most concurrent single-image Classify / gradient Saliency calls computed as one batch; 1: off (default 8)"),
    _limit("--batch-delay-ms", float,
        "ms a call may wait for companions while a batch of its kind computes; 0: no batching (default 2)"),
    _limit("--max-embedding-points", int, "most points of an Embedding map"),
    _limit("--max-perplexity", float, "largest t-SNE perplexity"),
    _limit("--max-job-mb", _megabytes,
        "MB of working memory one dataset-level job (index, map, neighbours, robustness) may "
        f"hold, estimated from its sizes before it starts (default {JOB_MEMORY_FRACTION:.0%} of"
        " the cgroup memory limit, else of RAM)", field="max_job_bytes"),
    _limit("--max-job-gmacs", _gigamacs,
        "giga multiply-adds one dataset-level job may cost, estimated from its sizes before it "
        "starts (default 50000: about 20 minutes on a 2-core CPU)", field="max_job_macs"),
    _limit("--max-place-images", int, "most images per PlaceImages request"),
    _limit("--max-message-bytes", int, "largest request/response"),
    _limit("--max-image-pixels", int, "largest decoded image (w*h)"),
    _limit("--max-image-side", int, "largest image_size for iterative methods"),
    _limit("--max-steps", int, "most optimization steps per run"),
    _limit("--max-octaves", int, "most DeepDream octaves"),
    _limit("--max-alphas", int, "most alphas per InterpolateFeatures"),
    _limit("--max-set-size", int, "most images per attribute set"),
    _limit("--max-epsilons", int, "most epsilons per Attack sweep"),
    _limit("--max-samples", int, "most SmoothGrad samples / IG steps"),
    _limit("--max-channels", int, "most channels per VisualizeFilter"),
    _limit("--max-layers", int, "most distinct layers per Activations"),
    _limit("--max-restarts", int, "most VisualizeFilter restarts"),
    _limit("--max-dataset-images", int, "most images per AttackDataset request"),
    _limit("--max-batch-pixels", int, "most images x side^2 in one request's batch (memory budget)"),
    _limit("--stream-stall", float,
        "seconds a streamed call may wait for its client to read before it is cancelled", field="stream_stall_s"),
    _limit("--max-pixel-steps", int, "most batch pixels x optimization steps per request (time budget)"),
    _limit("--max-concurrent-heavy", int, "heavy RPCs computing at once"),
    _limit("--max-queued-heavy", int, "heavy RPCs waiting; beyond it RESOURCE_EXHAUSTED"),
    _limit("--default-deadline", float,
        "seconds an RPC may run when the client sets no deadline", field="default_deadline_s"),
    _limit("--max-concurrent-rpcs", int,
        "RPCs in progress at once, waiting for a worker included (health too: at most 16 of them Watch streams); "
        "beyond it RESOURCE_EXHAUSTED (default 64)"),
    _limit("--keepalive-time", float,
        "seconds of silence before the server pings a connection (default 60)", field="keepalive_time_s"),
    _limit("--keepalive-timeout", float,
        "seconds a keepalive ping may go unanswered before the connection is closed "
        "(default 20)", field="keepalive_timeout_s"),
    _limit("--max-connection-idle", float,
        "seconds a connection may carry no RPC before it is closed (default 900)", field="max_connection_idle_s"),
    _limit("--max-connection-age", float,
        "seconds after which any connection is asked to close (default 3600)", field="max_connection_age_s"),
    _limit("--max-connection-age-grace", float,
        "seconds RPCs in flight on an aged connection get before they are cut "
        "(default 660)", field="max_connection_age_grace_s"),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp-server",
        description="Serve cnn-interp (gRPC interp.v1). Every flag also reads its INTERP_* environment variable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('cnn-interp')}")
    for flag, env, dest, kind, text in OPTIONS:
        metavar = env.removeprefix("INTERP_")
        # argparse %-formats help texts: a literal "%" (as in "25% of RAM") must reach it doubled.
        text = f"{text} [env {env}]".replace("%", "%%")
        if kind is _bool:  # --flag alone means true; --flag 0 / INTERP_...=0 false
            parser.add_argument(flag, dest=dest, type=kind, metavar=metavar, help=text, nargs="?", const=True)
        else:
            parser.add_argument(flag, dest=dest, type=kind, metavar=metavar, help=text)
    parser.add_argument(
        "--no-download",
        dest="download_weights",
        action="store_const",
        const=False,
        help="never download weights (as --download-weights 0) [env INTERP_DOWNLOAD_WEIGHTS=0]",
    )
    for flag, env, dest, kind, metavar, text in REPEATABLE:
        parser.add_argument(flag, dest=dest, type=kind, action="append", default=None, metavar=metavar,
                            help=f"{text} (repeatable) [env {env}, comma-separated]")  # fmt: skip
    return parser


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Build the config from flags, then INTERP_* variables, then defaults."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    top: dict[str, object] = {}
    limits: dict[str, object] = {}
    for _flag, env, dest, kind, _text in OPTIONS:
        value = getattr(args, dest)
        if value is None and environ.get(env, "") != "":
            try:
                value = kind(environ[env])
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise SystemExit(f"interp-server: bad {env}={environ[env]!r}: {exc}") from None
        if value is None:
            continue
        if dest.startswith("limits."):
            limits[dest.removeprefix("limits.")] = value
        else:
            top[dest] = value
    for _flag, env, dest, kind, _metavar, _text in REPEATABLE:
        pairs = getattr(args, dest)
        if pairs is None and environ.get(env):
            try:
                pairs = [kind(item) for item in _csv(environ[env])]
            except argparse.ArgumentTypeError as exc:
                raise SystemExit(f"interp-server: bad {env}={environ[env]!r}: {exc}") from None
        if pairs:
            top[dest] = dict(pairs)
    config = ServerConfig(**top, limits=Limits(**limits))  # type: ignore[arg-type]
    validate_config(config)
    return config


def validate_config(config: ServerConfig) -> None:
    if not 0 <= config.port <= 65535:
        raise SystemExit(f"interp-server: port must be in 0..65535, got {config.port}")
    if config.worker_threads < 1:
        raise SystemExit(f"interp-server: --workers must be >= 1, got {config.worker_threads}")
    if config.torch_threads < 0:
        raise SystemExit(
            f"interp-server: --torch-threads must be >= 0 (0: torch's default), got {config.torch_threads}"
        )
    if not 0 <= config.keep_freed_mb <= MAX_KEEP_MB:
        raise SystemExit(f"interp-server: --keep-freed-mb must be in 0..{MAX_KEEP_MB}, got {config.keep_freed_mb}")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise SystemExit("interp-server: --tls-cert and --tls-key go together")
    if config.tls_client_ca is not None and config.tls_cert is None:
        raise SystemExit("interp-server: --tls-client-ca needs TLS: give --tls-cert and --tls-key too")
    for path in (config.tls_cert, config.tls_key, config.tls_client_ca, config.auth_tokens_file):
        if path is not None and not path.is_file():
            what = "not a file (a directory)" if path.is_dir() else "no such file"
            raise SystemExit(f"interp-server: {what}: {path}")
    if not (math.isfinite(config.grace_s) and config.grace_s >= 0):
        raise SystemExit(f"interp-server: --grace must be a number of seconds >= 0, got {config.grace_s}")
    if not (math.isfinite(config.drain_delay_s) and config.drain_delay_s >= 0):
        raise SystemExit(f"interp-server: --drain-delay must be a number of seconds >= 0, got {config.drain_delay_s}")
    if not isinstance(logging.getLevelName(config.log_level.upper()), int):
        raise SystemExit(
            f"interp-server: --log-level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {config.log_level!r}"
        )
    if config.log_format not in ("text", "json"):
        raise SystemExit(f"interp-server: --log-format must be text or json, got {config.log_format!r}")
    for item in fields(Limits):
        value = getattr(config.limits, item.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise SystemExit(f"interp-server: limit {item.name} must be a finite number, got {value}")
        if value < 0 or (value == 0 and item.name not in ZERO_MEANS_OFF):
            floor = ">= 0" if item.name in ZERO_MEANS_OFF else "> 0"
            raise SystemExit(f"interp-server: limit {item.name} must be {floor}, got {value}")


def read_tokens_file(path: Path) -> list[str]:
    """Tokens of a tokens file: one a line, surrounding blanks stripped, lines starting with ``#`` skipped.

    Only whole-line comments: ``abc#secret`` is the token ``abc#secret``, not ``abc``.
    """
    tokens = []
    for line in path.read_text().splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            tokens.append(token)
    return tokens


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def auth_tokens(config: ServerConfig) -> tuple[str, ...]:
    """Tokens from --auth-tokens and --auth-tokens-file together, checked so that auth fails closed.

    Raises:
        SystemExit: a tokens file without tokens, an empty token, a token shorter than
            ``MIN_TOKEN_LENGTH``, or no authentication at all (no token, no --tls-client-ca) on a
            non-loopback address without --allow-unauthenticated.
    """
    tokens = list(config.auth_tokens)
    if any(not token.strip() for token in tokens):
        raise SystemExit("interp-server: an auth token is empty; refusing to serve")
    if config.auth_tokens_file is not None:
        from_file = read_tokens_file(config.auth_tokens_file)
        if not from_file:
            # fail closed: an empty secret (e.g. not mounted yet) must not silently switch auth off
            raise SystemExit(f"interp-server: {config.auth_tokens_file} holds no token; refusing to serve without auth")
        tokens.extend(from_file)
    short = [index for index, token in enumerate(tokens, 1) if len(token) < MIN_TOKEN_LENGTH]
    if short:
        # which ones by position only: the tokens themselves must not reach a log
        raise SystemExit(
            f"interp-server: auth token(s) number {', '.join(map(str, short))} are shorter than "
            f"{MIN_TOKEN_LENGTH} characters; use long random tokens (e.g. `openssl rand -hex 32`)"
        )
    unauthenticated = not tokens and config.tls_client_ca is None
    if unauthenticated and not config.allow_unauthenticated and not is_loopback(config.host):
        raise SystemExit(
            f"interp-server: refusing to serve {config.host} without authentication: set --auth-tokens / "
            "--auth-tokens-file or --tls-client-ca, bind --host 127.0.0.1, or pass --allow-unauthenticated "
            "if anyone who can reach this address may use the server"
        )
    return tuple(tokens)


def env_vars() -> list[str]:
    """Every environment variable the server reads (checked against docker-compose.yml)."""
    return [env for _f, env, _d, _k, _t in OPTIONS] + [env for _f, env, *_rest in REPEATABLE]
