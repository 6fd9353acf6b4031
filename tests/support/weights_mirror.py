"""A weights mirror on 127.0.0.1 and a test model whose weights record names a file it serves.

Not a test module. The published VGG16/AlexNet files cannot be matched by a file a test makes (their
names carry a checksum prefix), so the download tests register ``tiny-weights``: a small network
whose record names ``tiny-weights-<first 8 hex of its sha256>.pth``, a state_dict the test writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from torch import nn

from models import registry
from models.registry import ModelSpec, Preprocessing, WeightsRecord

TINY = "tiny-weights"
TINY_CLASSES = 160  # 512 x 160 float32 in the last layer: a file of about 330 kB, many chunks


def build_tiny() -> nn.Sequential:
    """(B, 3, 8, 8) -> (B, 160): conv, relu, flatten, linear."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, TINY_CLASSES))


def tiny_file_bytes(seed: int) -> bytes:
    """A state_dict of ``build_tiny`` under ``torch.manual_seed(seed)``, as ``torch.save`` writes it."""
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(build_tiny().state_dict(), buffer)
    return buffer.getvalue()


def tiny_spec(data: bytes) -> ModelSpec:
    """A spec whose weights record names ``data`` by its checksum prefix (and has no URL of its own)."""
    name = f"{TINY}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    return ModelSpec(
        name=TINY,
        task="image-classification",
        dataset="none (test)",
        description="a test model for weights downloads",
        input_shape=(3, 8, 8),
        num_classes=TINY_CLASSES,
        labels=tuple(f"class {i}" for i in range(TINY_CLASSES)),
        preprocessing=Preprocessing(3, 8, 0, 0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "test images"),
        build=build_tiny,
        weights=WeightsRecord(canonical_name=name, sha256_prefix=name.split("-")[-1].split(".")[0], origin="a test"),
    )


def register_tiny(monkeypatch: pytest.MonkeyPatch, data: bytes) -> ModelSpec:
    spec = tiny_spec(data)
    monkeypatch.setitem(registry._REGISTRY, TINY, spec)
    return spec


def with_url(spec: ModelSpec, url: str) -> ModelSpec:
    return dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, url=url))


class Mirror:
    """An HTTP server on 127.0.0.1 serving ``files`` (path -> bytes), counting what reaches it.

    Attributes:
        files: "/name" -> the bytes served (404 for anything else).
        connections: TCP connections accepted.
        requests: GETs per path.
        truncate_at: send the full Content-Length but close after this many bytes (None: all).
        pause_at: send this many bytes, then wait for ``resume`` before the rest (None: no pause).
        paused: set once a response has reached ``pause_at``.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.connections = 0
        self.requests: Counter[str] = Counter()
        self.truncate_at: int | None = None
        self.pause_at: int | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                mirror.requests[self.path] += 1
                data = mirror.files.get(self.path)
                if data is None:
                    self.send_error(404, "no such file on this mirror")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                end = len(data) if mirror.truncate_at is None else mirror.truncate_at
                if mirror.pause_at is not None and mirror.pause_at < end:
                    self.wfile.write(data[: mirror.pause_at])
                    self.wfile.flush()
                    mirror.paused.set()
                    mirror.resume.wait(60)
                    self.wfile.write(data[mirror.pause_at : end])
                else:
                    self.wfile.write(data[:end])
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, object]:
                accepted = super().get_request()
                mirror.connections += 1
                return accepted

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="test-mirror", daemon=True)

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def mirror_serving(files: dict[str, bytes]) -> Iterator[Mirror]:
    with Mirror() as mirror:
        mirror.files.update(files)
        yield mirror


def closed_port_url() -> str:
    """http://127.0.0.1:PORT for a port that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class ConnectSpy:
    """Records the timeout every socket has when ``connect`` is called on it, and the bound of each
    name lookup (``models.download.lookup``'s timeout). Install with :meth:`install`."""

    def __init__(self) -> None:
        self.connect_timeouts: list[float | None] = []
        self.lookup_bounds: list[float] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
        from models import download

        spy, real_lookup = self, download.lookup

        class RecordingSocket(socket.socket):
            def connect(self, address: object) -> None:
                spy.connect_timeouts.append(self.gettimeout())
                super().connect(address)  # type: ignore[arg-type]

        def recording_lookup(host: str, port: int, timeout: float) -> list[tuple[object, ...]]:
            spy.lookup_bounds.append(timeout)
            return real_lookup(host, port, timeout)

        monkeypatch.setattr(download.socket, "socket", RecordingSocket)
        monkeypatch.setattr(download, "lookup", recording_lookup)
        return self
