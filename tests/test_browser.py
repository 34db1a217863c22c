"""The main flow in a real browser: open the app, go to Predict, upload a cell,
wait for the predicted class and the heatmap, and keep a screenshot.

Uses Debian's Chromium through Playwright. Locally it skips when no Chromium
is found; under CI=true it fails instead.
"""

from __future__ import annotations

import pytest

from bloodcell.bench import CHROMIUM_FLAGS, VERDICT, app_server, find_chromium_binary
from bloodcell.cells import DISPLAY_NAMES
from bloodcell.config import DEFAULT_MODEL, PROJECT_ROOT
from conftest import IN_CI

pytestmark = pytest.mark.browser

OUTPUT_DIR = PROJECT_ROOT / "test-output"
START_TIMEOUT_S = 90
RESULT_TIMEOUT_MS = 120_000


def find_chromium() -> str:
    found = find_chromium_binary()
    if found:
        return found
    if IN_CI:
        pytest.fail("Chromium (or Playwright) not found; .ci/run installs Debian's chromium package")
    pytest.skip("Chromium or Playwright not found (apt-get install chromium)")


@pytest.fixture()
def running_app(real_data, shipped_models, tmp_path):
    with app_server(shipped_models, real_data, tmp_path / "streamlit.log", START_TIMEOUT_S) as server:
        yield server.url


def test_upload_on_predict_shows_class_and_heatmap(running_app, real_data):
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    cell = sorted((real_data / "seg_neutrophil").iterdir())[0]
    OUTPUT_DIR.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            # A fresh server's first visitor follows a deep link to a page:
            # it must still get the app's navigation, not a lone page.
            page.goto(f"{running_app}/dataset", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Dataset").wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_role("link", name="Predict").first.click()
            page.get_by_role("heading", name="Predict").wait_for(timeout=RESULT_TIMEOUT_MS)
            assert page.get_by_role("link", name="Home").count() >= 1
            page.locator('input[type="file"]').first.set_input_files(str(cell))
            verdict = page.locator(VERDICT)
            verdict.first.wait_for(timeout=RESULT_TIMEOUT_MS)
            text = verdict.first.inner_text()
            assert any(name in text for name in DISPLAY_NAMES.values()), text
            heatmap = page.get_by_text("Grad-CAM for", exact=False)
            heatmap.first.wait_for(timeout=RESULT_TIMEOUT_MS)
            assert page.locator('[data-testid="stImage"] img').count() >= 2
            page.get_by_text("Classifying").wait_for(state="detached", timeout=RESULT_TIMEOUT_MS)
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                ".every(img => img.complete && img.naturalWidth > 0)", timeout=RESULT_TIMEOUT_MS)
            page.locator(".js-plotly-plot").first.wait_for(timeout=RESULT_TIMEOUT_MS)
            # The default model (chosen on Home) survives the switch to Predict,
            # and shows what it saw: the cell view.
            assert page.get_by_text(f"{DEFAULT_MODEL} sees the cell view").count() == 1
            page.screenshot(path=str(OUTPUT_DIR / "browser-predict.png"), full_page=True)
            assert not page.locator('[data-testid="stException"]').count()
            # The same cell in each training lab's look, a verdict under each.
            page.get_by_text("Show each cell in both training labs' looks").click()
            page.get_by_text("Its best guess", exact=False).first.wait_for(timeout=RESULT_TIMEOUT_MS)
            assert page.get_by_text("would show it", exact=False).count() == 2
            assert page.locator(VERDICT).count() == 3
            assert not page.locator('[data-testid="stException"]').count()
            # The Trust page shows every model's audit side by side.
            page.get_by_role("link", name="Trust").first.click()
            page.get_by_role("heading", name="Trust").wait_for(timeout=RESULT_TIMEOUT_MS)
            page.locator(".js-plotly-plot").first.wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_text("says", exact=False).first.wait_for(timeout=RESULT_TIMEOUT_MS)  # example cells
            page.screenshot(path=str(OUTPUT_DIR / "browser-trust.png"), full_page=True)
            assert not page.locator('[data-testid="stException"]').count()
        finally:
            browser.close()
