"""The explorer on a model served from configuration, in headless Chromium: the fine-tuned
ResNet-18 of docs/own-models.md's walk, made by running the walk's own python blocks (its
state_dict and its card), served by ``--model mine=torchvision:resnet18:...`` and
``--model-card mine=mine.json`` next to nothing else. The models page lists it with its card's
provenance, its model page shows its layer strip, a layer page computes its units, the lab
classifies an uploaded photo with the card's class names. Screenshots: own-*.png (`make
screenshots` writes them into docs/images/explorer/ for that page)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.conftest import require
from tests.e2e.test_readme import README_TARGET, ROOT, page_blocks, run_python
from tests.e2e.web_harness import CHROMEDRIVER, CHROMIUM, WebServer, check_page, chromium, screenshots_folder, wait

WALK = ROOT / "docs" / "own-models.md"


@pytest.fixture(scope="module")
def walk_files(tmp_path_factory) -> Path:
    """The walk's python blocks run in a scratch folder: mine-resnet18.pt and mine.json."""
    folder = tmp_path_factory.mktemp("walk")
    for block in page_blocks(WALK):
        if block.language == "python" and block.no_test is None:
            run_python(block, README_TARGET, folder)
    assert (folder / "mine-resnet18.pt").is_file() and (folder / "mine.json").is_file()
    return folder


@dataclass(frozen=True)
class Explorer:
    driver: Any  # headless Chromium
    site: str  # the explorer's URL
    shots: Path  # where the screenshots go


@pytest.fixture(scope="module")
def explorer(walk_files, tmp_path_factory) -> Iterator[Explorer]:
    """The walk's model served as ``mine`` (with lenet), the explorer over it, and a browser."""
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "chromium and chromium-driver (apt)")
    from server.app import create_server
    from tests.support.servers import test_config
    from web import WebSettings, create_app

    config = test_config(
        models=("lenet",),
        model_specs={"mine": f"torchvision:resnet18:{walk_files / 'mine-resnet18.pt'}"},
        model_cards={"mine": walk_files / "mine.json"},
    )
    server, port = create_server(config)
    server.start()
    web = WebServer(create_app(WebSettings(server=f"127.0.0.1:{port}")))
    browser = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield Explorer(browser, web.url, screenshots_folder(tmp_path_factory))
    finally:
        browser.quit()
        web.stop()
        server.stop(grace=None)


def test_models_page_lists_it_with_its_cards_provenance(explorer, walk_files) -> None:
    driver, site, shots = explorer.driver, explorer.site, explorer.shots
    from selenium.webdriver.common.by import By

    from models.weights import file_sha256

    card = json.loads((walk_files / "mine.json").read_text())
    driver.get(site + "/")
    table = wait(driver, lambda d: d.find_element(By.ID, "models"))
    row = next(r for r in table.find_elements(By.CSS_SELECTOR, "tbody tr") if r.text.startswith("mine"))
    sha = file_sha256(walk_files / "mine-resnet18.pt")
    for shown in (card["description"], card["dataset"], "READY", "pretrained", "torchvision file", "mine-resnet18.pt",
                  f"sha256 {sha[:12]}", "3×64×64"):  # fmt: skip
        assert shown in row.text, (shown, row.text)
    check_page(driver, site, shots, "own-models")
    row.find_element(By.LINK_TEXT, "mine").click()
    wait(driver, lambda d: d.current_url == site + "/models/mine")


def test_model_page_shows_its_layer_strip(explorer) -> None:
    driver, site, shots = explorer.driver, explorer.site, explorer.shots
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/mine")
    kernels = wait(driver, lambda d: d.find_element(By.ID, "kernels"))
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", kernels) > 0)  # conv1's 64 kernels
    strip = driver.find_element(By.ID, "strip")
    for shown in ("conv1", "64×32×32", "RF 7px", "layer1.0.conv1", "layer4", "fc"):
        assert shown in strip.text, (shown, strip.text[:2000])
    assert "3 classes" in driver.find_element(By.ID, "app").text
    check_page(driver, site, shots, "own-model")


def test_layer_page_computes_its_units(explorer) -> None:
    driver, site, shots = explorer.driver, explorer.site, explorer.shots
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/mine/layers/conv1?steps=8")
    bar = wait(driver, lambda d: d.find_element(By.ID, "progress"))
    wait(driver, lambda d: bar.get_attribute("data-done") == "true")
    visuals = driver.find_elements(By.CSS_SELECTOR, "img.visual")
    assert len(visuals) == 16  # the first page of conv1's 64 units, each visualized
    text = driver.find_element(By.ID, "app").text
    assert "64 units" in text and "page 1 of 4" in text, text[:2000]
    wait(driver, lambda d: all(d.execute_script("return arguments[0].naturalWidth", v) > 0 for v in visuals))
    check_page(driver, site, shots, "own-layer")


def test_lab_classifies_an_upload_with_the_cards_class_names(explorer, tmp_path, cat_rgb) -> None:
    driver, site, shots = explorer.driver, explorer.site, explorer.shots
    from selenium.webdriver.common.by import By

    image = tmp_path / "cat.jpg"
    assert cv2.imwrite(str(image), cv2.cvtColor(cat_rgb, cv2.COLOR_RGB2BGR))
    driver.get(site + "/lab?model=mine")
    wait(driver, lambda d: d.find_element(By.ID, "file")).send_keys(str(image))
    predictions = wait(driver, lambda d: d.find_element(By.ID, "predictions").text)
    lines = predictions.splitlines()
    assert lines[0].startswith("cat"), predictions
    assert {"cat", "coffee", "rocket"} <= {word for line in lines for word in line.split()}, predictions
    wait(driver, lambda d: d.find_element(By.ID, "overlay"))  # the saliency map
    wait(driver, lambda d: d.find_element(By.ID, "adversarial-pred").text)
    check_page(driver, site, shots, "own-lab")


def test_the_lab_maps_a_deep_models_convolutions_at_most_32() -> None:
    from client.results import LayerInfo
    from web.api.lab import LAB_LAYERS, lab_layers

    def layer(name: str, kind: str, shape: tuple[int, ...] = (8, 4, 4)) -> LayerInfo:
        return LayerInfo(name=name, aliases=(), type=kind, output_shape=shape, channels=shape[0],
                         receptive_field=None, parameters=0, has_kernels=kind == "Conv2d")  # fmt: skip

    shallow = [layer("normalize", "Normalize"), layer("conv1", "Conv2d"), layer("relu1", "ReLU"),
               layer("fc", "Linear", (3,))]  # fmt: skip
    assert lab_layers(shallow) == ["conv1", "relu1"]  # every spatial layer after the normalization
    block = ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "BasicBlock"]
    resnet = [layer("pool", "MaxPool2d")] + [layer(f"b{i}.{j}", kind) for i in range(8) for j, kind in enumerate(block)]
    assert lab_layers(resnet) == ["pool"] + [f"b{i}.{j}" for i in range(8) for j in (0, 3)]  # 17 <= 32
    deep = [layer(f"conv{i}", "Conv2d") for i in range(100)]
    chosen = lab_layers(deep)
    assert len(chosen) == LAB_LAYERS and chosen[-1] == "conv99" and chosen == sorted(chosen, key=lambda n: int(n[4:]))
