"""The explorer over the offline jobs' results, in headless Chromium: a real ``interp-atlas`` run
(LeNet relu2, 8 steps, batches of 8 units) and a real ``interp-robustness`` run (FGSM and PGD over 40 test images),
both console scripts in subprocesses writing beside an index directory; then a server started
with that directory. The layer and unit pages show the atlas's units without computing them and
say they are precomputed, with the job's parameters; the robustness page shows the stored curves
as offline results beside its on-demand run, which the server answers from the same store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, require_fashion_mnist
from tests.e2e.web_harness import CHROMEDRIVER, CHROMIUM, check_page, chromium, lenet_site, screenshots_folder, wait

ROOT = Path(__file__).resolve().parents[2]
ATLAS_STEPS = 8
ATLAS_BATCH = 8  # not the default 16: the layer page takes the atlas's batch as its page size


def _job(script: str, *args: str) -> str:
    """Run an installed console script as a user does; its stdout."""
    launcher = Path(sys.executable).parent / script
    require(launcher.exists(), f"the {script} console script (pip install -e .)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(launcher), *args], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "chromium and chromium-driver (apt)")
    require_fashion_mnist()
    index_dir = tmp_path_factory.mktemp("offline") / "index"
    common = ("lenet", "fashion-mnist-test", "--index-dir", str(index_dir))
    out = _job("interp-atlas", *common, "--layers", "relu2", "--steps", str(ATLAS_STEPS),
               "--batch", str(ATLAS_BATCH), "--threads", "1")  # fmt: skip
    assert "16 units computed" in out
    out = _job("interp-robustness", *common, "--method", "fgsm,pgd", "--eps", "0.05,0.2", "--limit", "40")
    assert "40 images" in out
    with lenet_site(index_dir) as url:
        yield url


@pytest.fixture(scope="module")
def driver(site, tmp_path_factory) -> Iterator[Any]:
    browser = chromium(tmp_path_factory.mktemp("chromium-profile"))  # after `site`: it checks for chromium
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return screenshots_folder(tmp_path_factory)


def _done(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    bar = wait(driver, lambda d: d.find_element(By.ID, "progress"))
    wait(driver, lambda d: bar.get_attribute("data-done") == "true")
    return str(driver.find_element(By.ID, "progress-status").text)


def test_layer_page_shows_its_units_from_the_atlas(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/relu2")
    assert _done(driver) == "8 unit(s) from the atlas (precomputed by interp-atlas), not computed now"
    note = driver.find_element(By.ID, "atlas").text
    assert "shown from the atlas, not computed" in note, note
    for words in (f"steps {ATLAS_STEPS}", "seed 0", "image size 28", f"batch {ATLAS_BATCH}", "16 units stored",
                  "top-9 from fashion-mnist-test"):  # fmt: skip
        assert words in note, (words, note)
    assert "page 1 of 2" in driver.find_element(By.CLASS_NAME, "pager").text  # a page is one stored batch
    visuals = driver.find_elements(By.CSS_SELECTOR, "img.visual")
    assert len(visuals) == ATLAS_BATCH
    wait(driver, lambda d: all(d.execute_script("return arguments[0].naturalWidth", v) > 0 for v in visuals))
    assert len(driver.find_elements(By.CSS_SELECTOR, "img.top")) == ATLAS_BATCH  # the job built relu2's index
    check_page(driver, site, shots, "layer-atlas")


def test_unit_page_shows_its_unit_from_the_atlas(driver, site, shots) -> None:
    """A unit of the second batch (not in the explorer's cache yet): its whole stored batch, from the atlas."""
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/relu2/units/12")
    assert _done(driver) == "8 unit(s) from the atlas (precomputed by interp-atlas), not computed now"
    note = driver.find_element(By.ID, "atlas").text
    assert "precomputed by interp-atlas" in note and f"steps {ATLAS_STEPS}" in note
    visual = driver.find_element(By.ID, "visual")
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", visual) > 0)
    snippet = driver.find_element(By.CSS_SELECTOR, "details.code pre").get_attribute("textContent")
    assert "[8, 9, 10, 11, 12, 13, 14, 15]" in snippet and f"steps={ATLAS_STEPS}" in snippet, snippet
    check_page(driver, site, shots, "unit-atlas")


def test_layer_page_with_other_parameters_links_to_the_atlas(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/models/lenet/layers/relu2?steps=16&per_page=4")
    assert _done(driver) == "computed 4 unit(s)"
    note = driver.find_element(By.ID, "atlas")
    assert "these parameters are not its own" in note.text
    note.find_element(By.LINK_TEXT, "show the atlas").click()
    wait(driver, lambda d: d.current_url == site + "/models/lenet/layers/relu2")
    assert "shown from the atlas" in wait(driver, lambda d: d.find_element(By.ID, "atlas")).text


def test_robustness_page_shows_the_offline_curves_beside_its_run(driver, site, shots) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site + "/robustness?model=lenet&dataset=fashion-mnist-test&methods=fgsm,pgd&eps=0.05,0.2&limit=40")
    box = wait(driver, lambda d: d.find_element(By.ID, "offline-0"))
    text = box.text
    assert "Computed offline by interp-robustness (engine local)" in text, text
    assert "fgsm, pgd at ε 0.05, 0.2 over the first 40 images" in text and "seed 0" in text
    curve = driver.find_element(By.ID, "offline-0-curve")
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", curve) > 0)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#offline-0-accuracy tr")) == 3  # a header and two methods
    assert "minimal ε per image" in text  # the per-image minimal eps distribution, one per method
    driver.find_elements(By.CSS_SELECTOR, "#offline-0-accuracy a.flip")[-1].click()
    assert "first fail at ε 0.2" in wait(driver, lambda d: d.find_element(By.ID, "offline-0-flips").text)
    # the same settings on demand: the server answers from the stored result at once
    driver.find_element(By.ID, "run").click()
    wait(driver, lambda d: d.find_element(By.ID, "robustness-progress").get_attribute("data-done") == "true")
    status = driver.find_element(By.CSS_SELECTOR, "#robustness-progress + span").text
    assert "precomputed" in status, status
    ran = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#accuracy tr")]
    stored = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#offline-0-accuracy tr")]
    assert ran == stored
    driver.execute_script("document.getElementById('offline').scrollIntoView()")
    check_page(driver, site, shots, "robustness-offline")
