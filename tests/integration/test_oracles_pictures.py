"""The embedding pictures put point i where its coordinates say, y up: the scatter PNG (the marker's
colour at the mapped pixel), the atlas PNG (thumbnail i in the cell of its mapped pixel) and the
HTML page (in headless chromium, the point under the cursor at the mapped position is point i).

The map is of a small image folder, one image per class, so every point has its own colour and
thumbnail. The mapping written here is the pictures' stated one: the points' bounding box centred
in a size x size square less a margin, one scale for both axes, y pointing up.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from client import InterpClient
from server.app import create_server
from tests.conftest import require, require_fashion_mnist
from tests.support.servers import test_config

TAB10 = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
DATASET = "one-per-class"


def mapped(coords: np.ndarray, size: int, margin: int) -> np.ndarray:
    """(N, 2) float pixel positions (x right, y down) of coordinates (x right, y up)."""
    lo, hi = coords.min(0), coords.max(0)
    span = float(max(hi - lo)) or 1.0
    xy = (coords - (lo + hi) / 2) * (size - 2 * margin) / span + size / 2
    xy[:, 1] = size - xy[:, 1]
    return xy


def _decode(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> Any:
    """A PCA map of 9 Fashion-MNIST test images, one per class folder (labels 0..8 = tab10 colours)."""
    from models.datasets import load_dataset

    require_fashion_mnist()
    images, labels = load_dataset("fashion-mnist", "test", download=False)
    root = tmp_path_factory.mktemp("one-per-class")
    for c in range(9):
        (root / f"c{c}").mkdir()
        cv2.imwrite(str(root / f"c{c}" / "x.png"), images[int(np.flatnonzero(labels == c)[0])])
    config = test_config(models=("lenet",), index_dir=tmp_path_factory.mktemp("index"), datasets={DATASET: root})
    srv, port = create_server(config)
    srv.start()
    try:
        with InterpClient(f"127.0.0.1:{port}", timeout=300) as client:
            r = client.embedding("lenet", dataset=DATASET, layer="relu3", method="pca")
    finally:
        srv.stop(grace=None)
    assert list(r.labels) == list(range(9)) and list(r.image_ids) == list(range(9))
    return r


def _not_symmetric(xy: np.ndarray, size: int) -> None:
    """The oracle can tell a swap or a mirror: some point's swapped / mirrored position is far from it."""
    assert np.abs(xy[:, ::-1] - xy).max() > 20 and np.abs((size - xy[:, 1]) - xy[:, 1]).max() > 20


def test_scatter_png_puts_each_marker_at_its_mapped_pixel(result):
    image = _decode(result.scatter_png)
    xy = mapped(result.coordinates.astype(np.float64), 800, 12)
    _not_symmetric(xy, 800)
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) + np.eye(len(xy)) * 99
    assert d.min() > 5  # markers (radius 2) do not overlap
    for i, (x, y) in enumerate(np.round(xy).astype(int)):
        colour = image[y, x].astype(int)
        assert np.abs(colour - TAB10[int(result.labels[i])]).max() <= 12, (i, (x, y), colour)


def test_atlas_png_puts_each_thumbnail_in_its_mapped_cell(result):
    image = _decode(result.atlas_png)
    sprite = _decode(result.thumbnails_png)
    side, columns = result.thumbnail_size, result.thumbnail_columns
    xy = mapped(result.coordinates.astype(np.float64), 1600, side)
    _not_symmetric(xy, 1600)
    cells = [(int(y // side), int(x // side)) for x, y in np.round(xy)]
    assert len(set(cells)) == len(cells)  # one point per cell: each shows its own thumbnail
    for i, (row, col) in enumerate(cells):
        r, c = divmod(i, columns)
        thumb = sprite[r * side : (r + 1) * side, c * side : (c + 1) * side]
        assert thumb.std() > 0  # not a blank tile
        tile = image[row * side : (row + 1) * side, col * side : (col + 1) * side]
        np.testing.assert_array_equal(tile, thumb, err_msg=f"point {i} at cell {(row, col)}")


def test_html_page_hover_at_the_mapped_position_is_point_i(result, tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
    except ImportError:
        require(False, "selenium is not installed (pip install selenium)")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"
    require(chromium and Path(driver_path).exists(), missing)
    page = result.write_html(tmp_path / "map.html")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1000"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(Path(page).resolve().as_uri())
        canvas = driver.find_element(By.ID, "map")
        assert driver.find_element(By.ID, "points").get_attribute("data-drawn") == "9"
        width, height = canvas.size["width"], canvas.size["height"]
        xy = mapped(result.coordinates.astype(np.float64), width, 16)
        _not_symmetric(xy, width)
        for i, (x, y) in enumerate(xy):
            # selenium 4 offsets are from the element's centre
            ActionChains(driver).move_to_element_with_offset(canvas, int(round(x - width / 2)),
                                                             int(round(y - height / 2))).perform()  # fmt: skip
            tip = driver.find_element(By.ID, "tip")
            assert tip.get_attribute("data-point") == str(i), (i, x, y, tip.get_attribute("data-point"))
            assert tip.value_of_css_property("display") == "block"
    finally:
        driver.quit()
