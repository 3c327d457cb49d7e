"""A real browser (Debian's Chromium driven by Playwright) against the app on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, gradient_photo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def result_src(page) -> str | None:
    img = page.locator("#result img")
    return img.first.get_attribute("src") if img.count() else None


def wait_for_new_result(page, previous: str | None, timeout_s: float = 60) -> str:
    page.wait_for_function(
        "(prev) => { const i = document.querySelector('#result img'); return i && i.src && i.src !== prev; }",
        arg=previous, timeout=timeout_s * 1000)
    return result_src(page)


def test_pick_a_preset_run_watch_it_update_then_stop_a_second_run(browser, server, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    photo = tmp_path / "photo.png"
    gradient_photo(160, 120).save(photo)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#presets img", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#weights-status')?.innerText.includes('Weights:')")

    page.locator("#presets img").first.click()
    page.wait_for_function("() => document.querySelector('#style-label')?.innerText.includes('Starry Night')")
    page.locator("#content input[type=file]").set_input_files(str(photo))
    page.wait_for_selector("#content img", timeout=15_000)
    page.locator("#steps input[type=number]").fill("40")
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#size input[type=number]").fill("96")
    page.locator("#size input[type=number]").press("Enter")

    page.locator("#run").click()
    first = wait_for_new_result(page, None)
    second = wait_for_new_result(page, first)
    assert first != second  # the image updated at least twice while running
    page.wait_for_function("() => document.querySelector('#status')?.innerText.includes('Done 40/40')", timeout=120_000)
    page.wait_for_selector("#slider img", timeout=10_000)  # before/after slider filled and shown
    assert "preset=starry_night" in page.locator("#share-link textarea, #share-link input").first.input_value()
    page.screenshot(path=str(ARTIFACTS / "browser-finished.png"), full_page=True)

    page.locator("#steps input[type=number]").fill("1000")
    page.locator("#steps input[type=number]").press("Enter")
    done_src = result_src(page)
    page.locator("#run").click()
    wait_for_new_result(page, done_src)  # the second run is streaming
    page.locator("#stop").click()
    page.wait_for_function("() => document.querySelector('#status')?.innerText.includes('Stopped at step')",
                           timeout=10_000)
    assert "/1000" in page.locator("#status").inner_text()  # stopped mid-run, far from the end
    assert result_src(page) is not None  # the last image is kept, and is the result
    assert page.locator(".error, [class*=error]").filter(has_text="Error").count() == 0
    page.screenshot(path=str(ARTIFACTS / "browser-stopped.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("width, height, name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_screenshots_at_desktop_and_phone_widths(browser, server, width, height, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{server}?preset=the_scream&steps=150&style_strength=30")
    page.wait_for_function("() => document.querySelector('#style-label')?.innerText.includes('The Scream')", timeout=30_000)
    assert page.locator("#steps input[type=number]").input_value() == "150"
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), full_page=True)
    page.close()
