"""report.html in a real browser: headless Chromium (Debian's chromium and chromium-driver, which
.ci/run installs), driven by Selenium over ChromeDriver.

The page of a small predict-like folder (tests/leafseg/inference/report_data.py, no model) is
opened from file://, as a user opens it offline: it loads with no console error, every image
resolves (naturalWidth > 0), each thumbnail's link leads to an overlay that exists and opens in
the browser, and a click on a header sorts the table (numbers as numbers), a second click
reverses it. A page with a script error and a broken image is opened too, to show that these
checks catch them. A screenshot of the whole page goes to the test's tmp_path
(docs/images/report_screenshot.png was taken the same way, of a predict run on real photographs).

Without Chromium or ChromeDriver the tests fail, naming what to install: they are never skipped.
LEAFSEG_CHROMIUM and LEAFSEG_CHROMEDRIVER point to other binaries than /usr/bin's.
"""
import base64
import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from leafseg.inference.report import report_from_predict_output
from tests.leafseg.inference.report_data import FRAMES, make_predict_output

CHROMIUM = os.environ.get("LEAFSEG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LEAFSEG_CHROMEDRIVER", "/usr/bin/chromedriver")
# No network, no background services: the machine may be offline, and nothing should be fetched.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(path) and os.access(path, os.X_OK))]
    if missing:
        pytest.fail(f"the browser test of report.html needs headless Chromium and ChromeDriver, missing: "
                    f"{', '.join(missing)}; on Debian/Ubuntu: sudo apt-get install -y chromium chromium-driver "
                    "(.ci/run installs them)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, path):
    driver.get(Path(path).resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    driver.execute_script("return new Promise(function (done) { "
                          "Promise.all(Array.from(document.images).map(function (i) { return i.decode().catch("
                          "function () {}); })).then(function () { done(); }); })")


def save_page_screenshot(driver, path):
    """A PNG of the whole page, below the window's bottom too (DevTools' captureBeyondViewport);
    returns its [width, height]."""
    width, height = driver.execute_script("return [document.documentElement.scrollWidth, "
                                          "document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": width, "height": height,
                                                                 "scale": 1}})
    Path(path).write_bytes(base64.b64decode(shot["data"]))
    return [width, height]


def console_errors(driver):
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def broken_images(driver):
    return driver.execute_script(
        "return Array.from(document.images).filter(function (i) { return !i.complete || i.naturalWidth === 0; })"
        ".map(function (i) { return i.alt || i.src.slice(0, 40); });")


def column(driver, table_id, name):
    """The texts of the column headed ``name``, top to bottom, and its aria-sort."""
    headers = [th.text.strip() for th in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")]
    index = headers.index(name) + 1
    cells = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr td:nth-child({index})")
    header = driver.find_element(By.CSS_SELECTOR, f"#{table_id} thead th:nth-child({index})")
    return [cell.text for cell in cells], header.get_attribute("aria-sort")


def sort_by(driver, table_id, name):
    headers = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")
    header = next(th for th in headers if th.text.strip() == name)
    header.find_element(By.TAG_NAME, "button").click()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("predicted with space")
    make_predict_output(out)
    return report_from_predict_output(out)


def test_the_page_loads_with_no_console_error_and_every_image_resolves(browser, page, tmp_path):
    open_page(browser, page)
    assert console_errors(browser) == []
    count = browser.execute_script("return document.images.length")
    assert count == len(FRAMES) + 2   # a thumbnail per image and two growth curves
    assert broken_images(browser) == []
    assert browser.title.startswith("leafseg predict")
    size = save_page_screenshot(browser, tmp_path / "report.png")
    assert list(Image.open(tmp_path / "report.png").size) == size and size[1] > 1000


def test_thumbnails_link_to_overlays_that_open_full_size(browser, page):
    open_page(browser, page)
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".gallery a")]
    assert len(links) == len(FRAMES)
    for link in links:
        assert link.startswith("file://")
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(link).path))
        assert path.is_file() and path.parent == page.parent / "overlays", link
    browser.get(links[0])
    assert browser.execute_script("return document.images.length === 1 && document.images[0].naturalWidth") == 320
    assert console_errors(browser) == []


def test_a_click_on_a_header_sorts_the_table_and_a_second_reverses_it(browser, page):
    open_page(browser, page)
    before, sort = column(browser, "plant-table", "leaf_count")
    assert before == [str(count) for _, count in FRAMES] and sort == "none"
    sort_by(browser, "plant-table", "leaf_count")
    ascending, sort = column(browser, "plant-table", "leaf_count")
    assert sort == "ascending"
    assert ascending == [str(count) for count in sorted(count for _, count in FRAMES)]   # 11 last: numbers, not text
    sort_by(browser, "plant-table", "leaf_count")
    descending, sort = column(browser, "plant-table", "leaf_count")
    assert sort == "descending" and descending == ascending[::-1]
    assert column(browser, "plant-table", "image")[1] == "none"
    # The rows move whole: each image keeps its own count.
    images, _ = column(browser, "plant-table", "image")
    assert dict(zip(images, map(int, descending))) == dict(FRAMES)
    # Text in natural order.
    sort_by(browser, "plant-table", "image")
    images, sort = column(browser, "plant-table", "image")
    assert sort == "ascending" and images == sorted(name for name, _ in FRAMES)
    assert console_errors(browser) == []


def test_these_checks_catch_a_script_error_and_a_broken_image(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png" alt="gone">'
                   '<script>undefinedFunction();</script></body></html>')
    open_page(browser, bad)
    assert any("undefinedFunction" in message for message in console_errors(browser))
    assert broken_images(browser) == ["gone"]
