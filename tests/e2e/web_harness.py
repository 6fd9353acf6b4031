"""The explorer's test harness, without a conftest: a real LeNet gRPC server and the web app
served by uvicorn in a thread, both on ephemeral loopback ports; headless Chromium and the
checks every page passes."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import require_fashion_mnist

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 180


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


@contextmanager
def lenet_site(index_dir: Path) -> Iterator[str]:
    """The explorer over a LeNet server with an index of relu2 on fashion-mnist-test (the top-9): its URL."""
    server, target = start_service(index_dir)
    from client import InterpClient
    from web import WebSettings, create_app

    with InterpClient(target, timeout=300) as client:
        client.build_index("lenet", "fashion-mnist-test", layers=["relu2"], k=9)
    web = WebServer(create_app(WebSettings(server=target)))
    try:
        yield web.url
    finally:
        web.stop()
        server.stop(grace=None)


def chromium(profile: Path, *flags: str) -> Any:
    """Headless Chromium under chromedriver with its console and network logs kept (``flags`` added)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        *flags,
    ):
        options.add_argument(flag)  # fmt: skip
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_script_timeout(WAIT_S)
    return browser


def screenshots_folder(tmp_path_factory: Any) -> Path:
    """A temporary folder, or EXPLORER_SCREENSHOTS (`make screenshots`: the docs' pictures)."""
    chosen = os.environ.get("EXPLORER_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


def wait(driver: Any, condition: Any) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a page replaces its elements as answers arrive: a stale one is looked up again
    ignored = (StaleElementReferenceException,)
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)


def requested_urls(driver: Any) -> list[str]:
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def check_page(driver: Any, site: str, shots: Path, name: str) -> None:
    """No SEVERE console entry, nothing fetched outside the origin, every image decoded; a screenshot."""
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    network = [u for u in requested_urls(driver) if u.startswith(("http:", "https:", "ws:", "wss:", "//"))]
    outside = [u for u in network if not u.startswith(site + "/")]  # chrome:// (the browser's own tab) is not network
    assert not outside, outside
    broken = driver.execute_script(
        "return [...document.images].filter(i => !i.hidden && !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.alt || i.src.slice(0, 60))"
    )
    assert not broken, broken
    driver.save_screenshot(str(shots / f"{name}.png"))
