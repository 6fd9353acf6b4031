"""Every explorer page in headless Chromium (Debian's chromium + chromium-driver) over a real LeNet
server: no console error, no request outside the origin, every image decodes, the main
interaction works. Screenshots of each page go to a temporary folder (printed with -s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.e2e.web_harness import (
    CHROMEDRIVER,
    CHROMIUM,
    check_page,
    chromium,
    lenet_site,
    screenshots_folder,
    sneaker_png,
    wait,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "chromium and chromium-driver (apt)")
    with lenet_site(tmp_path_factory.mktemp("index")) as url:
        yield url


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Iterator[Any]:
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "chromium and chromium-driver (apt)")
    browser = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return screenshots_folder(tmp_path_factory)


def test_models_page(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/")
    table = wait(driver, lambda d: d.find_element(By.ID, "models"))
    assert "lenet" in table.text and "READY" in table.text and "pretrained" in table.text
    check_page(driver, site, shots, "models")
    driver.find_element(By.LINK_TEXT, "lenet").click()
    wait(driver, lambda d: d.current_url == site + "/models/lenet")


def test_model_page_strip_and_kernels(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet")
    kernels = wait(driver, lambda d: d.find_element(By.ID, "kernels"))
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", kernels) > 0)
    strip = driver.find_element(By.ID, "strip")
    assert "conv2" in strip.text and "16×10×10" in strip.text and "RF 14px" in strip.text
    check_page(driver, site, shots, "model")
    strip.find_element(By.LINK_TEXT, "relu2").click()
    wait(driver, lambda d: d.current_url == site + "/models/lenet/layers/relu2")


def test_layer_page_visualizes_every_unit_with_progress(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/relu2?steps=48")
    bar = wait(driver, lambda d: d.find_element(By.ID, "progress"))
    wait(driver, lambda d: bar.get_attribute("data-done") == "true")
    visuals = driver.find_elements(By.CSS_SELECTOR, "img.visual")
    assert len(visuals) == 16
    wait(driver, lambda d: all(d.execute_script("return arguments[0].naturalWidth", v) > 0 for v in visuals))
    assert len(driver.find_elements(By.CSS_SELECTOR, "img.top")) == 16  # relu2 is indexed: a top crop each
    check_page(driver, site, shots, "layer")
    driver.refresh()  # the second visit comes from the explorer's cache
    bar = wait(driver, lambda d: d.find_element(By.ID, "progress"))
    wait(driver, lambda d: bar.get_attribute("data-done") == "true")
    assert driver.find_element(By.ID, "progress-status").text == "from the explorer's cache"


def test_a_logits_layer_names_its_units_by_class_and_no_card_shows_a_broken_image(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/fc3?steps=8")
    cards = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#units .unit-card"))
    # while the visualizations compute, each card holds a blank square, not a broken-image icon
    pending = driver.execute_script(
        "return [...document.querySelectorAll('img.visual')].filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert pending == 0
    assert [c.text.splitlines()[0] for c in cards[:4]] == ["unit 0 · T-shirt/top", "unit 1 · Trouser",
                                                           "unit 2 · Pullover", "unit 3 · Dress"]  # fmt: skip
    assert driver.find_element(By.ID, "legend").text.startswith("Each card: the unit's feature visualization")
    bar = wait(driver, lambda d: d.find_element(By.ID, "progress"))
    wait(driver, lambda d: bar.get_attribute("data-done") == "true")
    check_page(driver, site, shots, "layer-logits")
    driver.get(site + "/models/lenet/layers/fc3/units/9?steps=8")
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("fc3 unit 9 (Ankle boot)"))


def test_unit_page_streams_its_visualization_and_shows_the_top_nine(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/relu2/units/5?steps=64")
    bar = wait(driver, lambda d: d.find_element(By.ID, "progress"))
    wait(driver, lambda d: bar.get_attribute("data-done") == "true")
    visual = driver.find_element(By.ID, "visual")
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", visual) > 0)
    top = driver.find_element(By.ID, "top")
    assert len(top.find_elements(By.CSS_SELECTOR, "img")) == 18  # nine crops and their projections
    cards = top.find_elements(By.CSS_SELECTOR, ".unit-card")
    rows = sorted({c.rect["y"] for c in cards})
    assert len(rows) == 3 and all(sum(c.rect["y"] == y for c in cards) == 3 for y in rows)  # 3 x 3, not 8 + 1
    assert driver.find_elements(By.LINK_TEXT, "download PNG")
    check_page(driver, site, shots, "unit")


def test_lab_upload_classes_maps_saliency_and_epsilon(driver, site, shots, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    image = tmp_path / "sneaker.png"
    image.write_bytes(sneaker_png())
    driver.get(site + "/lab?model=lenet")
    wait(driver, lambda d: d.find_element(By.ID, "file")).send_keys(str(image))
    predictions = wait(driver, lambda d: d.find_element(By.ID, "predictions").text)
    assert predictions.splitlines()[0].startswith("Sneaker")
    assert "image=" in driver.current_url  # the URL holds the upload's hash: the view is linkable
    wait(driver, lambda d: d.find_element(By.ID, "overlay"))
    original = wait(driver, lambda d: d.find_element(By.ID, "adversarial-pred").text)
    assert original.startswith("Sneaker")  # eps 0.01 does not flip it
    # the attack's "original" is the model's input (what it perturbs), not the uploaded file
    input_src = driver.find_element(By.ID, "input").get_attribute("src")
    assert driver.find_element(By.ID, "original-img").get_attribute("src") == input_src
    slider = driver.find_element(By.ID, "eps")
    slider.send_keys(Keys.END)  # the largest epsilon
    wait(driver, lambda d: "eps=0.5" in d.current_url)
    wait(driver, lambda d: not d.find_element(By.ID, "adversarial-pred").text.startswith("Sneaker"))
    wait(driver, lambda d: d.find_element(By.ID, "adversarial-img").get_attribute("src").startswith("data:"))
    driver.find_element(By.ID, "closest-failure").click()
    closest = wait(driver, lambda d: d.find_element(By.ID, "closest-pred").text)
    assert not closest.startswith("Sneaker") and "/255" in driver.find_element(By.ID, "closest").text
    check_page(driver, site, shots, "lab")
    link = driver.find_element(By.CSS_SELECTOR, "img.map[alt='relu2 unit 3']")
    link.click()
    wait(driver, lambda d: d.current_url.startswith(site + "/models/lenet/layers/relu2/units/3?image="))
    wait(driver, lambda d: d.find_element(By.ID, "progress").get_attribute("data-done") == "true")
    unit_map = wait(driver, lambda d: d.find_element(By.ID, "unit-map"))
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", unit_map) > 0)
    check_page(driver, site, shots, "unit-from-lab")


def test_a_first_layer_unit_page_shows_its_kernel_beside_the_visualization(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/conv1/units/3?steps=8")
    kernel = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#kernel img"))
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", kernel) > 0)
    visual = driver.find_element(By.ID, "visual")
    assert kernel.rect["x"] > visual.rect["x"] + visual.rect["width"]  # beside it, not below
    natural = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", kernel)
    # 5 x 5 enlarged to whole pixels per weight, shown at that size: square, not a speck, not stretched
    assert natural[0] == natural[1] >= 160 and kernel.rect["width"] == kernel.rect["height"] == natural[0]
    assert "flat or nearly" in driver.find_element(By.ID, "kernel").text  # the default channel objective
    check_page(driver, site, shots, "unit-kernel")
    driver.get(site + "/models/lenet/layers/conv1/units/3?steps=8&objective=neuron")
    text = wait(driver, lambda d: d.find_element(By.ID, "kernel")).text
    assert "linearly" in text and "flat" not in text  # a neuron's visualization shows the kernel's pattern


def test_layer_page_builds_a_missing_index_with_progress(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/conv1?steps=16")
    notice = wait(driver, lambda d: d.find_element(By.ID, "notice"))
    assert "BuildIndex" in notice.text and not driver.find_elements(By.CSS_SELECTOR, "img.top")
    driver.save_screenshot(str(shots / "layer-without-index.png"))
    driver.find_element(By.ID, "index-build").click()
    # the page reloads when the build is done, now with a top crop per unit
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.top")) == 6)
    assert not driver.find_elements(By.ID, "notice")
    wait(driver, lambda d: d.find_element(By.ID, "progress").get_attribute("data-done") == "true")
    check_page(driver, site, shots, "layer-indexed")


def test_unit_page_builds_a_missing_index_too(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/pool2/units/1?steps=8")
    notice = wait(driver, lambda d: d.find_element(By.ID, "notice"))
    assert "BuildIndex" in notice.text and not driver.find_elements(By.CSS_SELECTOR, "#top img")
    driver.find_element(By.ID, "index-build").click()
    # the page reloads when the build is done, now with the unit's top crops
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#top img")) >= 9)
    assert not driver.find_elements(By.ID, "notice")
    check_page(driver, site, shots, "unit-indexed")


def test_lab_drawing_neighbours_and_dream(driver, site, shots) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(site + "/lab?model=lenet")
    pad = wait(driver, lambda d: d.find_element(By.ID, "pad"))
    driver.find_element(By.CSS_SELECTOR, "details.panel summary").click()
    strokes = ActionChains(driver).move_to_element_with_offset(pad, -100, -60).click_and_hold()
    for dx, dy in ((200, 0), (0, 120), (-200, 0), (0, -120)):  # a box outline: something like a bag
        strokes = strokes.move_by_offset(dx, dy)
    strokes.release().perform()
    driver.find_element(By.ID, "use-drawing").click()
    predictions = wait(driver, lambda d: d.find_element(By.ID, "predictions").text)
    assert len(predictions.splitlines()) == 5  # a drawn image is classified like an upload
    Select(wait(driver, lambda d: d.find_element(By.ID, "neighbors-layer"))).select_by_value("relu2")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#neighbors img")) == 8)
    driver.find_element(By.ID, "dream-start").click()
    wait(driver, lambda d: d.find_element(By.ID, "dream-progress").get_attribute("data-done") == "true")
    assert "dlayer=" in driver.current_url and "nlayer=relu2" in driver.current_url
    check_page(driver, site, shots, "lab-drawing")


def test_robustness_page_runs_lists_flips_and_cancels(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/robustness?model=lenet&dataset=fashion-mnist-test&methods=fgsm,pgd&eps=0.05,0.2&limit=40&run=1")
    wait(driver, lambda d: d.find_element(By.ID, "robustness-progress").get_attribute("data-done") == "true")
    curve = driver.find_element(By.ID, "curve")
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", curve) > 0)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#accuracy tr")) == 3  # a header and two methods
    driver.find_elements(By.CSS_SELECTOR, "#accuracy a.flip")[-1].click()
    assert "first fail at ε 0.2" in wait(driver, lambda d: d.find_element(By.ID, "flips").text)
    check_page(driver, site, shots, "robustness")
    limit = driver.find_element(By.ID, "limit")
    limit.clear()
    limit.send_keys("5000")
    driver.find_element(By.ID, "run").click()
    wait(driver, lambda d: "/" in d.find_element(By.CSS_SELECTOR, "#robustness-progress + span").text)
    driver.find_element(By.ID, "cancel").click()
    wait(driver, lambda d: d.find_element(By.ID, "cancelled"))
    driver.get_log("browser")  # an aborted fetch is logged by Chromium; that is the point here


def test_embedding_page_places_the_lab_image(driver, site, shots, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    image = tmp_path / "sneaker.png"
    image.write_bytes(sneaker_png())
    driver.get(site + "/lab?model=lenet")
    wait(driver, lambda d: d.find_element(By.ID, "file")).send_keys(str(image))
    wait(driver, lambda d: d.find_element(By.ID, "to-embedding")).click()
    wait(driver, lambda d: "/embedding?" in d.current_url and "image=" in d.current_url)
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#layer option")) > 5)
    Select(driver.find_element(By.ID, "layer")).select_by_value("relu4")
    limit = driver.find_element(By.ID, "limit")
    limit.clear()
    limit.send_keys("500")
    driver.find_element(By.ID, "run").click()
    wait(driver, lambda d: d.find_element(By.ID, "embedding-progress").get_attribute("data-done") == "true")
    for name in ("scatter", "atlas", "placed"):
        element = driver.find_element(By.ID, name)
        wait(driver, lambda d, e=element: d.execute_script("return arguments[0].naturalWidth", e) > 0)
    assert "Sneaker" in driver.find_element(By.ID, "embedding").text
    check_page(driver, site, shots, "embedding")


def test_a_service_error_is_shown_not_blank(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/nope")
    alert = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".error"))
    assert "NOT_FOUND" in alert.text and "relu2" in alert.text and "layer" in alert.text
    driver.get_log("browser")  # the 404 the page read is logged by Chromium; that is the point here
    driver.save_screenshot(str(shots / "error.png"))


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/robustness?model=lenet&dataset=nope&methods=fgsm&eps=0.1&limit=20&run=1", "no dataset 'nope'"),
        ("/robustness?model=nope&dataset=fashion-mnist-test&run=1", "no model 'nope'"),
        ("/embedding?model=lenet&dataset=fashion-mnist-test&layer=nope&method=pca&limit=50&run=1", "no layer 'nope'"),
        ("/lab?model=nope", "no model 'nope'"),
        ("/live?model=lenet&layer=nope", "has no layer 'nope'"),
        ("/models/lenet/layers/relu2/units/abc", "relu2 has units 0..15, not abc"),
        ("/models/lenet/layers/relu2/units/-1", "relu2 has units 0..15, not -1"),
        ("/no/such/page", "no page at /no/such/page"),
    ],
    ids=["robustness-dataset", "robustness-model", "embedding-layer", "lab-model", "live-layer", "unit-abc",
         "unit-negative", "unknown-path"],  # fmt: skip
)
def test_a_link_asking_for_what_is_not_there_says_so(driver, site, path, refused) -> None:
    """Never a silent substitute (a link with a typo giving other results unsaid) nor a bare page:
    the refusal is on the page, under the navigation, and nothing starts on its own."""
    from selenium.webdriver.common.by import By

    driver.get(site + path)
    alert = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".error"))
    assert refused in alert.text
    assert driver.find_element(By.CSS_SELECTOR, "header a.brand").text == "interp explorer"
    for started in ("robustness", "embedding"):  # run=1 did not run with a substitute
        assert not driver.find_elements(By.CSS_SELECTOR, f"#{started} table, #{started} img")
    driver.get_log("browser")  # the refusals the pages read are logged by Chromium (4xx)


def test_the_labs_settings_from_a_link_are_checked_and_kept_through_a_unit_page(driver, site) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/lab?model=lenet&dataset=fashion-mnist-test&position=228&method=nope&attack=nope&eps=5")
    for refused in ("no method 'nope'", "no attack 'nope'", "ε 5 is not in 0.005..0.5"):
        wait(driver, lambda d, r=refused: any(r in e.text for e in d.find_elements(By.CSS_SELECTOR, ".error")))
    driver.get(site + "/lab?model=lenet&dataset=fashion-mnist-test&position=228&method=smoothgrad&eps=0.05")
    link = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".maps a"))
    link.click()
    back = wait(driver, lambda d: d.find_element(By.ID, "back-to-lab"))
    target = back.get_attribute("href")
    assert "dataset=fashion-mnist-test" in target and "position=228" in target and "method=smoothgrad" in target
    back.click()
    wait(driver, lambda d: "position=228" in d.current_url and d.find_elements(By.ID, "overlay"))
    driver.get_log("browser")


def test_a_layer_the_model_does_not_have_falls_back_to_the_views_default(driver, site) -> None:
    # e.g. the neighbours' layer of lenet-classic (sig2) kept in the URL after switching to lenet
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(site + "/lab?model=lenet&dataset=fashion-mnist-test&position=228&nlayer=sig2&dlayer=sig1")
    near = Select(wait(driver, lambda d: d.find_element(By.ID, "neighbors-layer")))
    dream = Select(driver.find_element(By.ID, "dream-layer"))
    names = [o.get_attribute("value") for o in near.options]
    assert "relu4" in names and "fc3" in names  # any layer is a feature space, fully connected ones too
    assert near.first_selected_option.get_attribute("value") == names[-2]  # the logits' input
    dreams = [o.get_attribute("value") for o in dream.options]
    assert dream.first_selected_option.get_attribute("value") == dreams[len(dreams) // 2]
    driver.get_log("browser")
