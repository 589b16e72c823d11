"""``srformer serve`` in a real browser: Debian's Chromium, headless, driven by Selenium through chromedriver.

Opens the page served by uvicorn, uploads a generated image, waits for the result, moves the before/after
slider, checks both images are shown at the output size (the input nearest-neighbour), that the download is
the file ``srformer upscale`` writes, and that the comparison view zooms both sides together; saves a
screenshot. Skipped, with the reason, only where Chromium or its driver is not installed
(``apt-get install chromium chromium-driver``; ``.ci/run`` installs them).
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason='srformer serve needs the web extra: pip install "srformer[web]"')
pytest.importorskip("selenium", reason="the browser test needs selenium (the dev extra)")

from test_web import FAST_MODEL, encoded, live_server, photo, upscale_command, wait_for  # noqa: E402

from srformer.web.app import Settings, create_app  # noqa: E402
from srformer.web.catalog import Catalog  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
    reason=f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver",
)

#: Flags for a browser that stays off the network (the machine may have none) and starts from nothing.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    # An explicit driver: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def address(tmp_path: Path) -> Iterator[str]:
    app = create_app(Settings(device="cpu", workdir=tmp_path / "work"), catalog=Catalog.build(device="cpu"))
    with live_server(app) as base:
        yield base


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def downloaded(driver, link_id: str) -> bytes:
    """The bytes behind a download link of the page (an object URL of the result the page received)."""
    encoded_bytes = driver.execute_async_script(
        """
        const [id, done] = arguments;
        fetch(document.getElementById(id).href).then((r) => r.arrayBuffer()).then((buffer) => {
          let text = "";
          for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
          done(btoa(text));
        });
        """,
        link_id,
    )
    return base64.b64decode(encoded_bytes)


def shown_when(driver, element_id: str, timeout: float = 120.0) -> None:
    def visible() -> bool:
        failed = js(driver, "return document.getElementById('status').classList.contains('error')")
        assert not failed, js(driver, "return document.getElementById('message').textContent")
        return js(driver, f"return !document.getElementById('{element_id}').hidden")

    wait_for(visible, timeout=timeout, what=f"#{element_id} to show")


def test_upscale_slide_compare_and_download_in_chromium(browser, address: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    width, height, scale = 40, 30, 4
    data = encoded(photo(width, height, seed=3), "PNG")
    source = tmp_path / "generated.png"
    source.write_bytes(data)

    browser.get(address + "/")
    wait_for(lambda: js(browser, "return document.getElementById('model').options.length") > 0, what="the models")
    Select(browser.find_element(By.ID, "model")).select_by_value(FAST_MODEL)
    browser.find_element(By.ID, "file").send_keys(str(source))
    browser.find_element(By.ID, "go").click()
    shown_when(browser, "download")

    # Both images at the output size; the input stretched nearest-neighbour, the result at its own size.
    sizes = js(
        browser,
        """
        const get = (id) => {
          const img = document.getElementById(id);
          return [img.naturalWidth, img.naturalHeight, img.width, img.height, getComputedStyle(img).imageRendering];
        };
        return {before: get('before'), after: get('after')};
        """,
    )
    assert sizes["before"] == [width, height, width * scale, height * scale, "pixelated"]
    assert sizes["after"][:4] == [width * scale, height * scale, width * scale, height * scale]
    info = browser.find_element(By.ID, "info").text
    assert FAST_MODEL in info and " s," in info

    # The slider moves the cut between before and after.
    clip = js(browser, "return document.getElementById('after').style.clipPath")
    slider = browser.find_element(By.ID, "slider")
    ActionChains(browser).click_and_hold(slider).move_by_offset(-300, 0).release().perform()
    assert int(slider.get_attribute("value")) < 400
    moved = js(browser, "return document.getElementById('after').style.clipPath")
    assert moved != clip and moved.startswith("inset(")

    # The download is the file `srformer upscale` writes.
    name = browser.find_element(By.ID, "download").get_attribute("download")
    assert name == "generated_x4.png"
    assert downloaded(browser, "download") == upscale_command(tmp_path, "generated.png", data, FAST_MODEL)
    browser.save_screenshot(str(tmp_path / "serve_single.png"))

    # Two models side by side, zoomed together.
    browser.find_element(By.ID, "tab-compare").click()
    Select(browser.find_element(By.ID, "model-b")).select_by_value("bicubic")
    browser.find_element(By.ID, "go").click()
    shown_when(browser, "download-b")
    shown_when(browser, "download-a")
    pair = js(
        browser,
        "return ['result-a', 'result-b'].map((id) => document.getElementById(id).naturalWidth)",
    )
    assert pair == [width * scale, width * scale]
    transforms = "return [...document.querySelectorAll('#compare .stage')].map((s) => s.style.transform)"
    before_zoom = js(browser, transforms)
    viewport = browser.find_element(By.ID, "a-viewport")
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(viewport), 0, -300).perform()
    wait_for(lambda: js(browser, transforms) != before_zoom, timeout=10, what="the zoom")
    left, right = js(browser, transforms)
    assert left == right and left != before_zoom[0]
    assert "bicubic" in browser.find_element(By.ID, "caption-b").text
    screenshot = tmp_path / "serve_compare.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
