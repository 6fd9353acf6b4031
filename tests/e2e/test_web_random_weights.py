"""An ImageNet model served with random weights (the server's explicit opt-in, pretrained=false)
beside LeNet, in headless Chromium: the note on every explorer page that shows what it computes
(the lab, the model, layer and unit pages, the robustness, embedding and live pages, and again
when a page's model picker changes to it), none on a pretrained model's pages nor on an unavailable
one's; and the lab's deep
feature interpolation, whose class-name sets only the models trained in this repo have, says so
for AlexNet instead of offering classes the server would refuse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, require_fashion_mnist
from tests.e2e.web_harness import CHROMEDRIVER, CHROMIUM, WebServer, check_page, chromium, screenshots_folder, wait

NOTE = "alexnet serves random weights"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[Any, str, Path]]:
    """lenet (its committed weights) and alexnet (seeded random weights), the explorer, a browser."""
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "chromium and chromium-driver (apt)")
    from server.app import create_server
    from tests.support.servers import test_config
    from web import WebSettings, create_app

    # "gone": a served model that cannot load (UNAVAILABLE): not pretrained, but not random weights either
    config = test_config(models=("lenet", "alexnet"), model_specs={"gone": "export:/nonexistent/model.pt2"})
    server, port = create_server(config)
    server.start()
    web = WebServer(create_app(WebSettings(server=f"127.0.0.1:{port}")))
    browser = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser, web.url, screenshots_folder(tmp_path_factory)
    finally:
        browser.quit()
        web.stop()
        server.stop(grace=None)


def _notes(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".weights-note") if e.is_displayed()]


@pytest.mark.parametrize(
    "path",
    [
        "/lab?model=alexnet",
        "/models/alexnet",
        "/models/alexnet/layers/features.1?steps=2&image_size=32",
        "/models/alexnet/layers/features.1/units/3?steps=2&image_size=32",
        "/robustness?model=alexnet",
        "/embedding?model=alexnet",
        "/live?model=alexnet",
        "/models/AlexNet/layers/features.1?steps=2&image_size=32",  # any case, as the server takes names
    ],
)
def test_a_random_weights_model_is_said_so_on_its_pages(site, path) -> None:
    driver, url, shots = site
    driver.get(url + path)
    notes = wait(driver, lambda d: _notes(d))
    assert len(notes) == 1 and notes[0].startswith(NOTE) and "pretrained=false" in notes[0], notes
    assert "untrained network" in notes[0]
    if path.startswith("/lab"):
        check_page(driver, url, shots, "random-weights-lab")


def test_a_pretrained_models_pages_carry_no_note_and_a_picker_change_brings_it(site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, url, _ = site
    for path, drawn in (
        ("/models/lenet", "#strip"),  # drawn with the page, from the model's own description
        ("/lab?model=lenet", ".weights-slot[data-model=lenet]"),
        ("/robustness?model=gone", ".weights-slot[data-model=gone]"),  # UNAVAILABLE: no claim about weights
        ("/robustness?model=lenet", ".weights-slot[data-model=lenet]"),
    ):
        driver.get(url + path)
        wait(driver, lambda d, drawn=drawn: d.find_elements(By.CSS_SELECTOR, drawn))
        assert not _notes(driver), path
    # the robustness page (the last one) keeps its page and swaps the note when the picker changes
    Select(driver.find_element(By.ID, "model")).select_by_value("alexnet")
    assert wait(driver, lambda d: _notes(d))[0].startswith(NOTE)
    Select(driver.find_element(By.ID, "model")).select_by_value("lenet")
    wait(driver, lambda d: not _notes(d))


def test_the_labs_interpolation_says_what_alexnet_needs_instead_of_offering_classes(site) -> None:
    from selenium.webdriver.common.by import By

    require_fashion_mnist()
    driver, url, _ = site
    driver.get(url + "/lab?model=alexnet&dataset=fashion-mnist-test&position=3")
    note = wait(driver, lambda d: d.find_elements(By.ID, "dfi-unavailable"))[0].text
    assert "training set, which the server samples for lenet but not for alexnet" in note, note
    assert "interp interpolate alexnet image.png --positive DIR --negative DIR" in note
    assert not driver.find_elements(By.ID, "dfi-from")  # no class pickers the server would refuse
    driver.get(url + "/lab?model=lenet&dataset=fashion-mnist-test&position=3")
    wait(driver, lambda d: d.find_elements(By.ID, "dfi-from"))
    assert not driver.find_elements(By.ID, "dfi-unavailable")


def test_pages_without_a_model_in_their_link_open_on_trained_weights_and_name_layers_by_alias(site) -> None:
    from selenium.webdriver.common.by import By

    driver, url, _ = site
    for path in ("/lab", "/live", "/robustness"):  # alexnet comes first by name, but serves random weights
        driver.get(url + path)
        model = wait(driver, lambda d: d.find_element(By.ID, "model"))
        wait(driver, lambda d, m=model: m.get_attribute("value") == "lenet")
    driver.get(url + "/models/alexnet")
    strip = wait(driver, lambda d: d.find_element(By.ID, "strip"))
    assert "served with random weights" in driver.find_element(By.CSS_SELECTOR, "p.muted").text
    first = strip.find_elements(By.CSS_SELECTOR, ".layer-card")[1]  # after the normalization: features.0
    assert first.find_element(By.CSS_SELECTOR, ".alias").text == "conv1"
    driver.get(url + "/models/alexnet/layers/features.4?steps=2&image_size=32")
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text == "features.4 (relu2) · alexnet")
