"""The lab's dataset images in headless Chromium over a real LeNet server (DatasetImages): browse a
dataset by class and load an image, open a flipped image from the robustness page and a point of
the embedding's scatter, and deep feature interpolation streamed to its end. Screenshots as in
test_web_pages.py (`make screenshots`: the docs' pictures)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.e2e import web_harness as harness
from tests.e2e.web_harness import check_page, request, wait

DATASET = "fashion-mnist-test"


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[tuple[str, Any, Path]]:
    """The explorer's URL, a headless Chromium and the screenshots' folder."""
    browser_installed = Path(harness.CHROMIUM).exists() and Path(harness.CHROMEDRIVER).exists()
    require(browser_installed, "chromium and chromium-driver (apt)")
    with harness.lenet_site(tmp_path_factory.mktemp("index")) as url:
        browser = harness.chromium(tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield url, browser, harness.screenshots_folder(tmp_path_factory)
        finally:
            browser.quit()


def sneakers() -> list[int]:
    import numpy as np

    from models.datasets import load_dataset

    _, labels = load_dataset("fashion-mnist", "test", download=False)
    return [int(i) for i in np.flatnonzero(labels == 7)]


def test_the_json_of_a_page_and_of_a_loaded_image(lab) -> None:
    site = lab[0]
    page = request(f"{site}/api/lab/datasets/{DATASET}/images?model=lenet&label=7&page=1&per_page=6").json()
    assert page["total"] == 1000 and page["classes"][7] == "Sneaker"
    assert [i["position"] for i in page["images"]] == sneakers()[6:12]
    assert all(i["label"] == "Sneaker" and i["png"].startswith("data:image/png;base64,") for i in page["images"])
    namespace: dict[str, Any] = {}
    exec(page["python"], namespace)  # "copy as Python" reproduces the page
    assert [i.position for i in namespace["result"].images] == sneakers()[6:12]
    headers = {"X-Interp-Web": "1"}
    url = f"{site}/api/lab/datasets/{DATASET}/images/{sneakers()[0]}?model=lenet"
    loaded = request(url, method="POST", data=b"{}", headers=headers).json()
    assert loaded["label"] == "Sneaker" and len(loaded["image"]) == 64
    image = request(f"{site}/api/lab/images/{loaded['image']}")
    assert image.status == 200 and image.body.startswith(b"\x89PNG")
    bad = request(f"{site}/api/lab/datasets/{DATASET}/images/10000?model=lenet", method="POST", data=b"{}",
                  headers=headers)  # fmt: skip
    assert bad.status == 400 and bad.json()["field"] == "positions[0]" and "out of range" in bad.json()["message"]
    unknown = request(f"{site}/api/lab/datasets/nope/images?model=lenet")
    assert unknown.status == 400 and unknown.json()["field"] == "dataset"
    forged = request(url, method="POST", data=b"{}")  # no X-Interp-Web: a cross-site form cannot load images
    assert forged.status == 403


def test_browse_a_dataset_by_class_and_load_an_image(lab) -> None:
    site, driver, shots = lab
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(site + "/lab?model=lenet")
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#browser summary")).click()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#browse-images button.thumb")) == 24)
    Select(driver.find_element(By.ID, "browse-class")).select_by_visible_text("Sneaker")
    wait(driver, lambda d: "(1000 images)" in d.find_element(By.ID, "browse-page").text)
    driver.find_element(By.ID, "browse-next").click()
    wait(driver, lambda d: d.find_element(By.ID, "browse-page").text.startswith("page 2 of 42"))
    thumbs = driver.find_elements(By.CSS_SELECTOR, "#browse-images button.thumb")
    positions = [int(t.get_attribute("data-position")) for t in thumbs]
    assert positions == sneakers()[24:48] and all("Sneaker" in t.text for t in thumbs)
    check_page(driver, site, shots, "lab-browser")
    thumbs[0].click()
    true_class = wait(driver, lambda d: d.find_element(By.ID, "true-class").text)
    assert true_class == f"{DATASET} #{positions[0]}, true class Sneaker"
    assert f"dataset={DATASET}&position={positions[0]}" in driver.current_url and "image=" not in driver.current_url
    predictions = wait(driver, lambda d: d.find_element(By.ID, "predictions").text)
    assert predictions.splitlines()[0].startswith("Sneaker")
    wait(driver, lambda d: d.find_element(By.ID, "overlay"))
    driver.execute_script("document.getElementById('browser').scrollIntoView()")
    check_page(driver, site, shots, "lab-dataset")
    driver.get(driver.current_url)  # the link alone reproduces the view
    assert wait(driver, lambda d: d.find_element(By.ID, "true-class").text) == true_class


def test_open_a_flipped_image_from_the_robustness_page(lab) -> None:
    site, driver, shots = lab
    from selenium.webdriver.common.by import By

    driver.get(site + f"/robustness?model=lenet&dataset={DATASET}&methods=fgsm&eps=0.05,0.2&limit=40&run=1")
    wait(driver, lambda d: d.find_element(By.ID, "robustness-progress").get_attribute("data-done") == "true")
    driver.find_elements(By.CSS_SELECTOR, "a.flip")[-1].click()
    links = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#flips a.to-lab"))
    position = int(links[0].text)
    assert 0 <= position < 40
    links[0].click()
    wait(driver, lambda d: d.current_url.startswith(site + "/lab?"))
    assert f"dataset={DATASET}&position={position}&attack=fgsm&eps=0.2" in driver.current_url
    from models.datasets import load_dataset

    _, labels = load_dataset("fashion-mnist", "test", download=False)
    classes = request(f"{site}/api/datasets").json()["datasets"]
    names = next(d["classes"] for d in classes if d["name"] == DATASET)
    true_class = wait(driver, lambda d: d.find_element(By.ID, "true-class").text)
    assert true_class == f"{DATASET} #{position}, true class {names[int(labels[position])]}"
    wait(driver, lambda d: d.find_element(By.ID, "adversarial-pred").text)  # the lab attacks it at the point's epsilon
    assert "ε 0.200" in driver.find_element(By.ID, "adversarial").text
    check_page(driver, site, shots, "lab-from-robustness")


def test_open_a_point_of_the_embedding_in_the_lab(lab) -> None:
    site, driver, shots = lab
    from selenium.webdriver.common.by import By

    query = f"model=lenet&dataset={DATASET}&layer=relu4&method=pca&limit=300"
    driver.get(f"{site}/embedding?{query}&run=1")
    wait(driver, lambda d: d.find_element(By.ID, "embedding-progress").get_attribute("data-done") == "true")
    scatter = driver.find_element(By.ID, "scatter")
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", scatter) > 0)
    # the same map again (the server's cache): its points' pixels on the scatter picture
    body = json.dumps({"model": "lenet", "dataset": DATASET, "layer": "relu4", "method": "pca", "limit": 300})
    reply = request(site + "/api/embedding", method="POST", data=body.encode(),
                    headers={"X-Interp-Web": "1", "Content-Type": "application/json"})  # fmt: skip
    result = json.loads(reply.body.decode().strip().split("\n\n")[-1].removeprefix("data: "))
    points = result["points_px"]
    assert len(points) == 300 and result["reused"]
    # a point with no other within 8 pixels: the click opens exactly it
    alone = (p for p in points if all((q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2 >= 64 for q in points if q is not p))
    x, y, position = next(alone)
    driver.execute_script(
        "const [img, x, y] = arguments; const r = img.getBoundingClientRect(); const s = r.width / img.naturalWidth;"
        "img.dispatchEvent(new MouseEvent('click', {bubbles: true, clientX: r.left + x * s, clientY: r.top + y * s}));",
        scatter,
        x,
        y,
    )
    wait(driver, lambda d: d.current_url.startswith(site + "/lab?"))
    assert f"dataset={DATASET}&position={position}" in driver.current_url
    true_class = wait(driver, lambda d: d.find_element(By.ID, "true-class").text)
    assert true_class.startswith(f"{DATASET} #{position}, true class ")
    wait(driver, lambda d: d.find_element(By.ID, "predictions"))


def test_deep_feature_interpolation_streams_to_its_end(lab) -> None:
    site, driver, shots = lab
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(f"{site}/lab?model=lenet&dataset={DATASET}&position={sneakers()[0]}")
    wait(driver, lambda d: d.find_element(By.ID, "true-class"))
    start = wait(driver, lambda d: d.find_element(By.ID, "dfi-start"))
    assert Select(driver.find_element(By.ID, "dfi-from")).first_selected_option.text == "Sneaker"  # the prediction
    Select(driver.find_element(By.ID, "dfi-to")).select_by_visible_text("Ankle boot")
    start.click()
    bar = driver.find_element(By.ID, "dfi-progress")
    wait(driver, lambda d: bar.get_attribute("data-done") == "true")
    assert float(bar.get_attribute("value")) == float(bar.get_attribute("max")) > 1
    image = driver.find_element(By.ID, "dfi-img")
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    alphas = driver.find_elements(By.CSS_SELECTOR, "#dfi-alphas .unit-card")
    assert len(alphas) == 5 and "α 0" in alphas[0].text and "α 2" in alphas[-1].text
    assert "Ankle boot" in alphas[-1].text  # moved towards the class
    assert "dfi_from=Sneaker" in driver.current_url and "dfi_to=Ankle+boot" in driver.current_url
    driver.execute_script("document.getElementById('dfi').previousElementSibling.scrollIntoView()")
    check_page(driver, site, shots, "lab-dfi")
