"""The main flow in a real browser: open the app, go to Predict, upload a cell,
wait for the predicted class and the heatmap, and keep a screenshot.

Uses Debian's Chromium through Playwright. Locally it skips when no Chromium
is found; under CI=true it fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from bloodcell.cells import DISPLAY_NAMES
from bloodcell.config import DATA_ENV, MODELS_ENV, PROJECT_ROOT
from conftest import IN_CI

pytestmark = pytest.mark.browser

OUTPUT_DIR = PROJECT_ROOT / "test-output"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
START_TIMEOUT_S = 90
RESULT_TIMEOUT_MS = 120_000


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if IN_CI:
        pytest.fail("Chromium not found; .ci/run installs Debian's chromium package")
    pytest.skip("Chromium not found (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer its health check within {START_TIMEOUT_S} s")


@pytest.fixture()
def running_app(real_data, shipped_models, tmp_path):
    port = free_port()
    env = {**os.environ, DATA_ENV: str(real_data), MODELS_ENV: str(shipped_models)}
    log = open(tmp_path / "streamlit.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "streamlit_app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


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
            verdict = page.locator('[data-testid="stAlertContentSuccess"], [data-testid="stAlertContentWarning"]')
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
            # The default model (chosen on Home) survives the switch to Predict.
            assert page.get_by_text("mobilenetv2: input").count() == 1
            page.screenshot(path=str(OUTPUT_DIR / "browser-predict.png"), full_page=True)
            assert not page.locator('[data-testid="stException"]').count()
        finally:
            browser.close()
