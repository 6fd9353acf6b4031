"""Downloading published weights: bounded network waits, progress, checksum, atomic publication.

A transfer is written under a temporary name next to its destination and renamed into place only
after its sha256 matched, so a partial, interrupted or refused transfer never becomes a weights
file. An exclusive lock file beside the destination makes processes that share one hub cache
download a file once: the second waits, then finds the file in place.

Network waits are bounded here, not by the OS defaults (which can be minutes offline): the name
lookup runs in a helper thread that is given ``NetworkBounds.lookup_s``, each resolved address gets
``connect_s`` to accept the connection, and an open connection that stays silent for ``read_s`` is
abandoned. Proxies from the environment (``https_proxy``) are honoured as urllib does.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from models.errors import WeightsError

try:  # POSIX; elsewhere the atomic rename alone keeps a shared cache consistent
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
LOG_EVERY_S = 2.0  # progress lines on the log at most this often (plus the first and the last)
LOCK_POLL_S = 0.2
BAR_WIDTH = 20


@dataclass(frozen=True)
class NetworkBounds:
    """How long a download may wait on the network, in seconds.

    Attributes:
        lookup_s: the name lookup of the host (getaddrinfo has no timeout of its own).
        connect_s: the TCP connection to each address the lookup returned.
        read_s: silence on an open connection before the transfer is abandoned.
    """

    lookup_s: float = 5.0
    connect_s: float = 5.0
    read_s: float = 30.0


class DownloadFailed(OSError):
    """The file could not be fetched (network, HTTP status, truncated transfer, cancelled).

    The weights then stay "not found"; a transfer whose bytes are refused raises WeightsError.
    """


Report = Callable[[str], None]


def lookup(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo(host, port)`` that gives up after ``timeout`` seconds.

    Raises:
        DownloadFailed: the lookup failed or did not finish in time (the helper thread is left to
            finish on its own; it holds nothing).
    """
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name=f"interp-lookup-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DownloadFailed(f"name lookup of {host} did not finish within {timeout:g} s")
    if "error" in result:
        raise DownloadFailed(f"name lookup of {host} failed: {result['error']}")
    return list(result["infos"])


def open_connection(host: str, port: int, bounds: NetworkBounds) -> socket.socket:
    """A TCP connection to ``host:port``: bounded lookup, then ``bounds.connect_s`` per address.

    The returned socket times out reads after ``bounds.read_s``.
    """
    failures = []
    for family, kind, proto, _name, address in lookup(host, port, bounds.lookup_s):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(bounds.connect_s)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            failures.append(f"{address[0]}: {exc}")
            continue
        sock.settimeout(bounds.read_s)
        return sock
    raise DownloadFailed(
        f"cannot connect to {host}:{port} (connect timeout {bounds.connect_s:g} s): {'; '.join(failures)}"
    )


class _BoundedHTTPConnection(http.client.HTTPConnection):
    bounds = NetworkBounds()

    def connect(self) -> None:
        self.sock = open_connection(self.host, self.port, self.bounds)
        if self._tunnel_host:  # type: ignore[attr-defined]  # CONNECT through a proxy
            self._tunnel()  # type: ignore[attr-defined]


class _BoundedHTTPSConnection(http.client.HTTPSConnection, _BoundedHTTPConnection):
    """HTTPSConnection.connect wraps what _BoundedHTTPConnection.connect (next in the MRO) opens."""


def _factory(cls: type[_BoundedHTTPConnection], bounds: NetworkBounds) -> Callable[..., http.client.HTTPConnection]:
    def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        connection = cls(host, **kwargs)
        connection.bounds = bounds
        return connection

    return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, bounds: NetworkBounds) -> None:
        super().__init__()
        self.bounds = bounds

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_factory(_BoundedHTTPConnection, self.bounds), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, bounds: NetworkBounds) -> None:
        super().__init__()
        self.bounds = bounds

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_factory(_BoundedHTTPSConnection, self.bounds), req, context=self._context)  # type: ignore[attr-defined]


def download_file(
    url: str,
    dest: Path,
    expected_sha256: str,
    *,
    bounds: NetworkBounds = NetworkBounds(),
    label: str = "",
    report: Report | None = None,
    cancel: threading.Event | None = None,
) -> bool:
    """Fetch ``url`` into ``dest`` once its sha256 starts with ``expected_sha256``.

    Args:
        url: http(s) or file URL.
        dest: the weights file to create (its directory is created).
        expected_sha256: the full hash or a prefix of it (torch.hub's rule); "" checks nothing.
        bounds: network waits.
        label: who downloads (the model name), for log lines.
        report: receives the model's status text while downloading ("downloading, N % (...)").
        cancel: set to abandon the transfer (checked between chunks).

    Returns:
        True when this call fetched the file; False when another process had put it in place
        while this one waited for the lock.

    Raises:
        DownloadFailed: network, HTTP or truncated transfer; nothing is left at ``dest``.
        WeightsError: the bytes arrived but their sha256 does not match; nothing is left at ``dest``.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(dest.with_name(dest.name + ".lock"), dest, report, cancel):
            if dest.is_file():
                return False
            _fetch_into(url, dest, expected_sha256, bounds, _Progress(label or dest.name, url, report), cancel)
    except DownloadFailed:
        raise
    except OSError as exc:  # the cache directory is not writable, the disk is full, ...
        raise DownloadFailed(f"cannot download into {dest.parent}: {exc}") from exc
    return True


def _fetch_into(
    url: str,
    dest: Path,
    expected_sha256: str,
    bounds: NetworkBounds,
    progress: _Progress,
    cancel: threading.Event | None,
) -> None:
    """Transfer to a temporary file beside ``dest``; rename it to ``dest`` once the checksum matched."""
    handle, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            sha256 = _transfer(url, out, bounds, progress, cancel)
            out.flush()
            os.fsync(out.fileno())
        if expected_sha256 and not sha256.startswith(expected_sha256):
            raise WeightsError(
                f"{progress.label}: download of {url} refused: its sha256 is {sha256}, expected "
                f"{'a hash starting with ' if len(expected_sha256) < 64 else ''}{expected_sha256}; "
                "nothing was written"
            )
        os.replace(temp, dest)
    finally:
        with suppress(FileNotFoundError):
            temp.unlink()


def _transfer(
    url: str, out: BinaryIO, bounds: NetworkBounds, progress: _Progress, cancel: threading.Event | None
) -> str:
    """Stream ``url`` into ``out``; the sha256 of what was written. Raises DownloadFailed."""
    opener = urllib.request.build_opener(_HTTPHandler(bounds), _HTTPSHandler(bounds))
    digest = hashlib.sha256()
    received = 0
    progress.start()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "cnn-interp"})
        with opener.open(request, timeout=bounds.read_s) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(CHUNK_BYTES):
                if cancel is not None and cancel.is_set():
                    raise DownloadFailed(f"download of {url} cancelled")
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                progress.update(received, total)
    except urllib.error.HTTPError as exc:
        raise DownloadFailed(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:  # wraps connection failures, including ours
        raise DownloadFailed(f"{url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, IncompleteRead mid-body
        if isinstance(exc, DownloadFailed):
            raise
        raise DownloadFailed(f"{url}: transfer failed after {received} bytes: {exc!r}") from exc
    if total is not None and received != total:
        raise DownloadFailed(f"{url}: transfer ended after {received} of {total} bytes")
    progress.done(received, digest.hexdigest())
    return digest.hexdigest()


@contextmanager
def _exclusive(lock_path: Path, dest: Path, report: Report | None, cancel: threading.Event | None) -> Any:
    """Hold an exclusive lock on ``lock_path`` (flock: released if the holder dies)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(lock_path, "a+b") as lock:
        waiting = False
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    waiting = True
                    text = f"waiting for another process downloading {dest.name} into {dest.parent}"
                    log.info("%s", text)
                    if report is not None:
                        report(text)
                if cancel is not None and cancel.wait(LOCK_POLL_S):
                    raise DownloadFailed(f"download of {dest.name} cancelled") from None
                if cancel is None:
                    time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f}"


class _Progress:
    """Status text for the model and a progress bar on the log (size, rate, ETA), throttled."""

    def __init__(self, label: str, url: str, report: Report | None) -> None:
        self.label, self.url, self.report = label, url, report
        self.started = self.logged = 0.0
        self.percent = -1

    def start(self) -> None:
        self.started = time.monotonic()
        log.info("%s: downloading %s", self.label, self.url)
        if self.report is not None:
            self.report(f"downloading, 0 % (connecting to {self.url})")

    def update(self, received: int, total: int | None) -> None:
        now = time.monotonic()
        rate = received / max(now - self.started, 1e-6)
        if total:
            percent = min(100, received * 100 // total)
            text = f"downloading, {percent} % ({_megabytes(received)} of {_megabytes(total)} MB from {self.url})"
        else:
            percent = 0
            text = f"downloading, {_megabytes(received)} MB so far from {self.url}"
        if self.report is not None and (percent != self.percent or not total):
            self.report(text)
        self.percent = percent
        if now - self.logged < LOG_EVERY_S:
            return
        self.logged = now
        if total:
            filled = BAR_WIDTH * received // total
            eta = (total - received) / rate if rate > 0 else float("inf")
            log.info(
                "%s: [%s%s] %3d %% %s/%s MB %.1f MB/s ETA %.0f s",
                self.label, "#" * filled, "." * (BAR_WIDTH - filled), percent,
                _megabytes(received), _megabytes(total), rate / 1e6, eta,
            )  # fmt: skip
        else:
            log.info("%s: %s MB %.1f MB/s (size unknown)", self.label, _megabytes(received), rate / 1e6)

    def done(self, received: int, sha256: str) -> None:
        elapsed = time.monotonic() - self.started
        log.info(
            "%s: downloaded %s MB in %.1f s (%.1f MB/s), sha256 %s",
            self.label, _megabytes(received), elapsed, received / max(elapsed, 1e-6) / 1e6, sha256,
        )  # fmt: skip
