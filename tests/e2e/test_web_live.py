"""The explorer's /live page: its WebSocket (frames in, a layer's grid out, the unit changed
mid-stream, the handshake's origin and login checks) and the page in headless Chromium fed a fake
camera: a .y4m clip of Fashion-MNIST images written here (YUV4MPEG2: a text header, then per
frame ``FRAME\\n`` and the raw Y, U and V planes of 4:2:0)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require
from tests.e2e.web_harness import (
    CHROMEDRIVER,
    CHROMIUM,
    WebServer,
    check_page,
    chromium,
    lenet_site,
    screenshots_folder,
    sneaker_png,
    start_service,
    wait,
)

SIDE = 112  # the clip's frames: Fashion-MNIST images scaled 4x


def write_y4m(path: Path, images: list[np.ndarray], *, repeat: int = 3, fps: int = 10) -> None:
    """A grey 4:2:0 clip of ``images`` (H, W uint8 each, even sides), each shown for ``repeat`` frames."""
    height, width = images[0].shape
    chroma = bytes([128]) * ((height // 2) * (width // 2) * 2)  # U and V planes: no colour
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image in images:
            for _ in range(repeat):
                out.write(b"FRAME\n" + np.ascontiguousarray(image, np.uint8).tobytes() + chroma)


def fashion_frames(count: int) -> list[np.ndarray]:
    from models.datasets import load_dataset

    images, _ = load_dataset("fashion-mnist", "test")
    return [np.kron(images[i].reshape(28, 28), np.ones((4, 4), np.uint8)) for i in range(count)]


def test_the_clip_is_a_valid_y4m(tmp_path) -> None:
    clip = tmp_path / "clip.y4m"
    frames = [np.full((4, 6), v, np.uint8) for v in (10, 20)]
    write_y4m(clip, frames, repeat=2)
    data = clip.read_bytes()
    header, body = data.split(b"\n", 1)
    assert header == b"YUV4MPEG2 W6 H4 F10:1 Ip A1:1 C420jpeg"
    frame = b"FRAME\n" + bytes([10]) * 24 + bytes([128]) * 12
    assert body.startswith(frame + frame) and len(body) == 4 * len(frame)


def test_the_grid_tiles_every_channel_and_frames_the_unit() -> None:
    from web.live import GAP_GREY, tile

    maps = np.stack([np.full((2, 3), c, np.float32) for c in range(5)])  # 5 channels of 2x3, value = index
    grid, layout = tile(maps, unit=4)
    assert layout == {"cols": 3, "rows": 2, "tile_width": 3, "tile_height": 2, "gap": 1, "channels": 5}
    assert grid.shape == (2 * 3 - 1, 3 * 4 - 1)
    np.testing.assert_allclose(grid[3:5, 4:7], 1.0)  # channel 4 (row 1, col 1) is the layer's maximum
    np.testing.assert_allclose(grid[0:2, 8:11], 0.5)  # channel 2
    assert grid[2, 0] == GAP_GREY and grid[2, 5] == 1.0 and grid[2, 9] == GAP_GREY  # the frame around unit 4
    vector, layout = tile(np.arange(10, dtype=np.float32))  # (F,): one pixel per unit, no gap
    assert grid.dtype == vector.dtype and vector.shape == (3, 4) and layout["gap"] == 0


@pytest.fixture(scope="module")
def plain_site(tmp_path_factory) -> Iterator[str]:
    server, target = start_service(tmp_path_factory.mktemp("index"))
    from web import WebSettings, create_app

    web = WebServer(create_app(WebSettings(server=target, access_token="s3cret")))
    yield web.url
    web.stop()
    server.stop(grace=None)


def _connect(url: str, layer: str = "relu2", **headers: str) -> Any:
    from websockets.sync.client import connect

    return connect(url.replace("http:", "ws:") + f"/api/live?model=lenet&layer={layer}", additional_headers=headers)


def test_the_socket_needs_this_origin_and_the_login(plain_site) -> None:
    from websockets.exceptions import InvalidStatus

    from tests.e2e.web_harness import request

    with pytest.raises(InvalidStatus) as refused:
        _connect(plain_site, Origin="http://evil.example").close()
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:  # this origin, but not logged in
        _connect(plain_site, Origin=plain_site).close()
    assert refused.value.response.status_code == 403
    login = request(plain_site + "/api/login", method="POST", data=b'{"token": "s3cret"}',
                    headers={"Content-Type": "application/json", "X-Interp-Web": "1"})  # fmt: skip
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    with _connect(plain_site, Origin=plain_site, Cookie=cookie) as socket:
        socket.send(sneaker_png())
        answer = json.loads(socket.recv(timeout=120))
        assert answer["type"] == "frame" and answer["sequence"] == 0 and answer["layer"] == "relu2"
        layout = [answer[k] for k in ("cols", "rows", "tile_width", "tile_height", "gap", "channels")]
        assert layout == [4, 4, 10, 10, 1, 16]
        assert answer["grid"].startswith("data:image/png;base64,") and "unit_map" not in answer
        assert answer["predictions"][0]["label"] == "Sneaker"
        socket.send(json.dumps({"unit": 3}))  # the unit changes for the next frame, same stream
        socket.send(sneaker_png())
        answer = json.loads(socket.recv(timeout=120))
        assert (answer["sequence"], answer["unit"]) == (1, 3) and answer["unit_map"].startswith("data:image/png")
        socket.send(json.dumps({"unit": "three"}))  # refused, the stream goes on
        error = json.loads(socket.recv(timeout=120))
        assert error["type"] == "error" and "unit" in error["message"]
        socket.send(b"not an image")  # a per-frame error from the service
        answer = json.loads(socket.recv(timeout=120))
        assert answer["sequence"] == 2 and answer["error"]["code"] == "INVALID_ARGUMENT"
        socket.send(sneaker_png())
        assert json.loads(socket.recv(timeout=120))["sequence"] == 3
    with _connect(plain_site, "nope", Origin=plain_site, Cookie=cookie) as socket:  # the stream's own error
        socket.send(sneaker_png())
        error = json.loads(socket.recv(timeout=120))
        assert error["type"] == "error" and error["code"] == "INVALID_ARGUMENT" and "nope" in error["message"]


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Iterator[tuple[Any, str]]:
    """Chromium whose camera plays a clip of Fashion-MNIST images, and the explorer's URL."""
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "chromium and chromium-driver (apt)")
    clip = tmp_path_factory.mktemp("clip") / "fashion.y4m"
    write_y4m(clip, fashion_frames(12))
    fake = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}")  # fmt: skip
    with lenet_site(tmp_path_factory.mktemp("index")) as url:
        browser = chromium(tmp_path_factory.mktemp("chromium-profile"), *fake)
        yield browser, url
        browser.quit()


def test_live_page_streams_the_camera_and_selects_a_unit(camera, tmp_path_factory) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver, site = camera
    shots = screenshots_folder(tmp_path_factory)
    driver.get(site + "/live?model=lenet&layer=relu2&steps=32")
    wait(driver, lambda d: d.find_element(By.ID, "camera")).click()
    counters = driver.find_element(By.ID, "counters")
    wait(driver, lambda d: int(counters.get_attribute("data-processed") or 0) >= 3)
    grid = driver.find_element(By.ID, "grid")
    first = grid.get_attribute("src")
    wait(driver, lambda d: grid.get_attribute("src") != first)  # the clip moves on: the grid changes
    seen = int(counters.get_attribute("data-processed"))
    wait(driver, lambda d: int(counters.get_attribute("data-processed")) >= seen + 5)
    assert "fps" in counters.text and "processed" in counters.text

    # channel 5 is the second tile of the second row of the 4x4 grid of 10x10 tiles (1 px apart)
    size = grid.size
    scale = size["width"] / 43
    ActionChains(driver).move_to_element_with_offset(
        grid, int(16 * scale) - size["width"] // 2, int(16 * scale) - size["height"] // 2
    ).click().perform()
    wait(driver, lambda d: "unit=5" in d.current_url)
    unit_map = wait(driver, lambda d: d.find_element(By.ID, "unit-map"))
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", unit_map) > 0)  # the stream's unit 5
    crops = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#top img.pixel"))
    assert len(crops) == 9
    wait(driver, lambda d: d.find_element(By.ID, "progress").get_attribute("data-done") == "true")
    visual = driver.find_element(By.ID, "visual")
    assert driver.execute_script("return arguments[0].naturalWidth", visual) > 0
    check_page(driver, site, shots, "live")
    driver.execute_script("document.getElementById('top').scrollIntoView()")
    driver.save_screenshot(str(shots / "live-unit.png"))

    # another layer mid-stream: the same page and stream (no reload), its grid from the next frame
    from selenium.webdriver.support.ui import Select

    driver.execute_script("window.sameStream = true")
    seen = int(counters.get_attribute("data-processed"))
    Select(driver.find_element(By.ID, "layer")).select_by_value("conv1")
    wait(driver, lambda d: "layer=conv1" in d.current_url and "unit=" not in d.current_url)
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", grid) == 3 * 29 - 1)  # 6 maps of 28
    assert driver.execute_script("return window.sameStream") is True
    assert int(counters.get_attribute("data-processed")) > seen
    assert driver.find_element(By.TAG_NAME, "h1").text == "Live · conv1 of lenet"
    assert 'layer="conv1"' in driver.find_element(By.ID, "live-python").get_attribute("textContent")


def test_live_page_streams_a_video_file_chosen_by_the_user(camera, tmp_path) -> None:
    import cv2  # the video extra (a dev dependency)
    from selenium.webdriver.common.by import By

    driver, site = camera
    clip = tmp_path / "fashion.webm"  # VP8: a codec every Chromium build plays
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"VP80"), 10, (SIDE, SIDE))
    for image in fashion_frames(8):
        for _ in range(3):
            writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    still = tmp_path / "still.png"  # not a video: the page says what plays instead
    cv2.imwrite(str(still), fashion_frames(1)[0])
    driver.get(site + "/live?model=lenet&layer=CONV1")  # layer names in any case, as elsewhere
    wait(driver, lambda d: d.find_element(By.ID, "layer").get_attribute("value") == "conv1")
    wait(driver, lambda d: d.find_element(By.ID, "video-file")).send_keys(str(still))
    status = driver.find_element(By.ID, "live-status")
    wait(driver, lambda d: "cannot play the file still.png" in status.text)
    assert "WebM" in status.text and "out.webm" in status.text
    driver.get(site + "/live?model=lenet&layer=conv1&unit=2")
    wait(driver, lambda d: d.find_element(By.ID, "video-file")).send_keys(str(clip))
    counters = driver.find_element(By.ID, "counters")
    wait(driver, lambda d: int(counters.get_attribute("data-processed") or 0) >= 3)
    grid = driver.find_element(By.ID, "grid")
    assert driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", grid) == [
        3 * 29 - 1,
        2 * 29 - 1,
    ]  # conv1: 6 channels of 28x28 in 3 columns, 1 pixel apart
    unit_map = driver.find_element(By.ID, "unit-map")  # unit 2 from the URL: its live map
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", unit_map) == 28)
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
