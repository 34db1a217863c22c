"""Load test: concurrent browser sessions against one local app server.

Starts `streamlit run` on a free localhost port, opens SESSIONS headless
Chromium pages (separate browser contexts, so separate Streamlit sessions),
and lets each upload its own cell images and wait for predictions with
heatmaps for DURATION seconds. Checks that every session only ever sees its
own image and that image's class, and prints latency percentiles.

    python -m benchmarks.load_test [--sessions 8] [--duration 60] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from bloodcell.bench import (CHROMIUM_FLAGS, DELETE_UPLOAD, RESULT, VERDICT, _memory_mb, app_server, benchmark_images,
                             find_chromium_binary)
from bloodcell.cells import DISPLAY_NAMES
from bloodcell.config import DEFAULT_MODEL, resolve_data_dir, resolve_models_dir
from bloodcell.inference import Classifier



async def session(browser, url: str, images: list[Path], expected: dict[str, str], until: float, index: int):
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    latencies, errors, mixups, done = [], [], 0, 0
    try:
        await page.goto(f"{url}/predict", wait_until="domcontentloaded")
        # The uploader's file input is hidden; it only has to exist.
        await page.locator('input[type="file"]').first.wait_for(state="attached", timeout=120_000)
        turn = 0
        while time.monotonic() < until:
            image = images[turn % len(images)]
            turn += 1
            while await page.locator(DELETE_UPLOAD).count():  # one image at a time, as a user would
                await page.locator(DELETE_UPLOAD).first.click()
                await page.wait_for_timeout(50)
            # The previous result must be gone first, or the wait below would
            # find it and time nothing.
            await page.wait_for_function(f'document.querySelectorAll("{VERDICT}").length === 0',
                                         timeout=120_000)
            start = time.perf_counter()
            await page.locator('input[type="file"]').first.set_input_files(str(image))
            await page.locator("strong", has_text=image.name).first.wait_for(timeout=120_000)
            await page.wait_for_function(
                "() => !document.querySelector('[data-testid=stSpinner]') && "
                f'document.querySelectorAll("{VERDICT}").length >= 1', timeout=120_000)
            latencies.append(time.perf_counter() - start)
            headers = await page.locator(f"{RESULT} strong").all_inner_texts()
            verdict = await page.locator(VERDICT).first.inner_text()
            names = [h for h in headers if h.endswith((".jpg", ".png", ".jpeg", ".bmp", ".tif", ".tiff"))]
            if names != [image.name] or DISPLAY_NAMES[expected[image.name]] not in verdict:
                mixups += 1
            if await page.locator("[data-testid=stException]").count():
                errors.append(f"session {index}: exception shown")
            done += 1
    except Exception as exc:  # a timeout or a crash is an error of the run, reported, not raised
        errors.append(f"session {index}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        await context.close()
    return latencies, errors, mixups, done


async def run(sessions: int, duration: float, models_dir: Path, data_dir: Path) -> dict:
    from playwright.async_api import async_playwright

    chromium = find_chromium_binary()
    if chromium is None:
        raise SystemExit("Playwright and Chromium are needed for the load test")
    images = benchmark_images(data_dir if data_dir.is_dir() else None, sessions * 2)
    classifier = Classifier.load(DEFAULT_MODEL, models_dir)  # the model the app shows first
    expected = {p.name: r.predicted_class for p, r in zip(images, classifier.predict_sources(images))}
    log = Path(tempfile.mkdtemp(prefix="bloodcell-load-")) / "streamlit.log"
    with app_server(models_dir, data_dir if data_dir.is_dir() else None, log) as server:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            until = time.monotonic() + duration
            outcomes = await asyncio.gather(*[
                session(browser, server.url, images[2 * i:2 * i + 2], expected, until, i) for i in range(sessions)])
            await browser.close()
        peak = _memory_mb(server.process.pid)[1]
    latencies = sorted(t for outcome in outcomes for t in outcome[0])
    errors = [e for outcome in outcomes for e in outcome[1]]
    return {
        "sessions": sessions, "duration_s": duration,
        "predictions": sum(o[3] for o in outcomes),
        "errors": errors, "mixups": sum(o[2] for o in outcomes),
        "latency_p50_ms": round(statistics.median(latencies) * 1000) if latencies else None,
        "latency_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000) if latencies else None,
        "latency_max_ms": round(latencies[-1] * 1000) if latencies else None,
        "server_peak_rss_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    result = asyncio.run(run(args.sessions, args.duration, resolve_models_dir(), resolve_data_dir()))
    for key, value in result.items():
        print(f"{key:18s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    raise SystemExit(1 if result["errors"] or result["mixups"] else 0)


if __name__ == "__main__":
    main()
