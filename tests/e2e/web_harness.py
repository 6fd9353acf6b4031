"""The explorer's test harness, without a conftest: a real LeNet gRPC server and the web app
served by uvicorn in a thread, both on ephemeral loopback ports."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import require_fashion_mnist


def start_service(index_dir: Path) -> tuple[Any, str]:
    """A real interp.v1 server serving lenet (its committed weights) with an index folder."""
    require_fashion_mnist()
    from server.app import create_server
    from server.config import Limits, ServerConfig

    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=8, default_deadline_s=300.0)
    config = ServerConfig(host="127.0.0.1", port=0, models=("lenet",), download_weights=False,
                          index_dir=index_dir, limits=limits, worker_threads=8)  # fmt: skip
    server, port = create_server(config)
    server.start()
    return server, f"127.0.0.1:{port}"


class WebServer:
    """uvicorn serving ``app`` on 127.0.0.1:<ephemeral> in a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str, *, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> Reply:
    """One HTTP request; error statuses are returned, not raised; redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=120) as reply:
            return Reply(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def sneaker_png() -> bytes:
    """A Fashion-MNIST test sneaker (class 7) as PNG bytes, encoded without OpenCV."""
    import numpy as np

    from models.datasets import load_dataset
    from web.pngs import encode_png

    images, labels = load_dataset("fashion-mnist", "test")
    return encode_png(images[int(np.flatnonzero(labels == 7)[0])])
