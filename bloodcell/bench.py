"""Benchmarks on this machine: latency, throughput, cold start and memory.

`python -m bloodcell bench` prints a table and can write JSON. Two parts:

- in-process: decode + preprocess + predict of one image, the same plus each
  explanation method, and batch throughput over 200 images;
- the running app: `streamlit run` is started as a subprocess and timed to its
  health check; headless Chromium (when Playwright and Chromium are
  installed) then opens Predict, uploads a cell and times the first
  prediction from process start, turns on model comparison so every shipped
  model is loaded, and keeps uploading new images while the server's resident
  memory is read from /proc.

Numbers only: nothing here asserts a target.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from bloodcell.config import (CLASS_NAMES, DEFAULT_MODEL, IMAGE_SUFFIXES, PROJECT_ROOT, resolve_data_dir,
                              resolve_models_dir)
from bloodcell.errors import BloodcellError
from bloodcell.explain import GRADCAM, GRADCAM_PLUS_PLUS, METHODS, SCORECAM, SMOOTHGRAD
from bloodcell.imaging import load_model_input, to_model_input, read_image
from bloodcell.inference import MODEL_FILE, available_models
from bloodcell.lookswap import LOOKS_FILE
from bloodcell.runtime import LITE_FILE
from bloodcell.service import ModelService

METHOD_KEYS = {GRADCAM: "gradcam", GRADCAM_PLUS_PLUS: "gradcam_plus_plus", SCORECAM: "scorecam",
               SMOOTHGRAD: "smoothgrad"}
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def cpu_name() -> str:
    """The processor's model name (Linux), or its architecture where the system does not say."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (round(statistics.median(ordered) * 1000, 2),
            round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] * 1000, 2))


def _timed(function, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def benchmark_images(data_dir: Path | None, count: int) -> list[Path]:
    """`count` distinct cell images, spread over the classes; drawn ones if no dataset."""
    paths: list[Path] = []
    if data_dir and Path(data_dir).is_dir():
        per_class = [sorted(p for p in (Path(data_dir) / c).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
                     for c in CLASS_NAMES if (Path(data_dir) / c).is_dir()]
        for index in range(max((len(files) for files in per_class), default=0)):
            paths += [files[index] for files in per_class if index < len(files)]
            if len(paths) >= count:
                return paths[:count]
    folder = Path(tempfile.mkdtemp(prefix="bloodcell-bench-"))
    rng = np.random.default_rng(0)
    from PIL import Image, ImageDraw

    while len(paths) < count:
        image = Image.new("RGB", (360, 360), tuple(int(v) for v in rng.integers(180, 250, 3)))
        centre, radius = rng.uniform(140, 220, 2), rng.uniform(60, 100)
        ImageDraw.Draw(image).ellipse([*(centre - radius), *(centre + radius)],
                                      fill=tuple(int(v) for v in rng.integers(60, 160, 3)))
        path = folder / f"drawn_{len(paths):04d}.png"
        image.save(path)
        paths.append(path)
    return paths


def in_process(model: str, models_dir: Path, images: list[Path], runs: int, batch_size: int,
               methods: tuple[str, ...] = METHODS) -> dict:
    """Time one model in this process: prediction, each heatmap method in `methods` it offers, a batch."""
    service = ModelService.load(model, models_dir)
    classifier, explainer = service.classifier, service.explainer
    size = classifier.input_size
    data = [p.read_bytes() for p in images]
    cycle = {"i": 0}

    def next_bytes() -> bytes:
        cycle["i"] = (cycle["i"] + 1) % len(data)
        return data[cycle["i"]]

    results: dict = {"model": model, "runtime": classifier.runtime, "input_size": size}
    view = classifier.view
    p50, p95 = _ms(_timed(lambda: classifier.predict_proba(load_model_input(next_bytes(), size, view)[None]),
                          runs))
    results.update(predict_p50_ms=p50, predict_p95_ms=p95)
    p50, p95 = _ms(_timed(lambda: explainer.gradcam(load_model_input(next_bytes(), size, view)), runs))
    results.update(predict_gradcam_p50_ms=p50, predict_gradcam_p95_ms=p95)
    # A pair explains both its networks with Grad-CAM only (bloodcell.pairing).
    for method in methods if classifier.single_network else set(methods) & {GRADCAM}:
        slow = method in (SCORECAM, SMOOTHGRAD, GRADCAM_PLUS_PLUS)
        samples = _timed(lambda: explainer.explain(to_model_input(read_image(next_bytes()), size, view), method),
                         max(3, runs // 5) if slow else runs, warmup=2)
        results[f"{METHOD_KEYS[method]}_p50_ms"] = _ms(samples)[0]
    batch = [data[i % len(data)] for i in range(batch_size)]
    start = time.perf_counter()
    predictions = classifier.predict_sources(batch)
    elapsed = time.perf_counter() - start
    results["batch_images"] = len(predictions)
    results["batch_images_per_s"] = round(len(predictions) / elapsed, 1)
    results["model_file_sizes_mb"] = {
        f"{name}/{path.name}": round(path.stat().st_size / 2**20, 2)
        for name in available_models(models_dir)
        for path in (models_dir / name / MODEL_FILE, models_dir / name / LITE_FILE) if path.is_file()
    }
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, from /proc (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return round(values.get("VmRSS", 0.0), 1), round(values.get("VmHWM", 0.0), 1)


def find_chromium_binary() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return None
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen
    started: float  # time.perf_counter() just before the process was started


@contextmanager
def app_server(models_dir: Path, data_dir: Path | None, log_path: Path,
               healthy_timeout_s: float = 120) -> Iterator[AppServer]:
    """`streamlit run` on a free localhost port, healthy inside the block, stopped after it."""
    env = {**os.environ, "BLOODCELL_MODELS": str(models_dir)}
    if data_dir:
        env["BLOODCELL_DATA"] = str(data_dir)
    port = free_port()
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "streamlit_app.py"), "--server.port",
             str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            server = AppServer(f"http://127.0.0.1:{port}", process, started)
            wait_healthy(server.url, process, healthy_timeout_s)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("the app did not become healthy")


# The uploaded file's remove button (Streamlit 1.67 names it a file chip;
# older versions stFileUploaderDeleteBtn).
DELETE_UPLOAD = "[data-testid=stFileChipDeleteBtn] button, [data-testid=stFileUploaderDeleteBtn] button"
# Each image's result and its verdict sit in keyed containers (pages/predict.py).
RESULT = "[class*='st-key-result_']"
VERDICT = "[class*='st-key-verdict_']"


# Shown in the toolbar while the script runs; the spinner alone appears only
# after a delay, so a run that has just started would look idle.
RUNNING = "[data-testid=stStatusWidgetRunningIcon], [data-testid=stSpinner]"


def wait_settled(page, expected_verdicts: int, timeout_ms: int = 120_000) -> None:
    """Wait until the script is idle and at least `expected_verdicts` verdicts are drawn."""
    page.wait_for_function(
        f"""n => !document.querySelector("{RUNNING}") &&
            document.querySelectorAll("{VERDICT}").length >= n""",
        arg=expected_verdicts, timeout=timeout_ms)


def upload_and_wait(page, path: Path, expected_verdicts: int, replace: bool = True,
                    timeout_ms: int = 120_000) -> None:
    """Upload one file on Predict and wait until its result is drawn.

    The uploader takes many files and adds each new one to the list; with
    `replace` the previous files are removed first (one image per step, as a
    user would), each removal waited for.
    """
    if replace:
        while page.locator(DELETE_UPLOAD).count():
            page.locator(DELETE_UPLOAD).first.click()
            page.wait_for_timeout(50)
        # The previous results must be gone before the next upload, or the
        # wait below would find them and time nothing.
        page.wait_for_function(f'() => document.querySelectorAll("{VERDICT}").length === 0',
                               timeout=timeout_ms)
    page.locator('input[type="file"]').first.set_input_files(str(path))
    page.locator("strong", has_text=path.name).first.wait_for(timeout=timeout_ms)
    wait_settled(page, expected_verdicts, timeout_ms)


def _page_and_log(page, log: Path, chars: int = 3000) -> str:
    """What the page showed and the app printed, to explain a failed run."""
    try:
        shown = page.inner_text("body", timeout=5000)[-chars:]
    except Exception as error:  # the browser itself may be gone
        shown = f"(page unreadable: {error})"
    printed = log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"
    return f"--- page text ---\n{shown}\n--- app log ---\n{printed}"


# The Predict page's toggle that shows each upload in both training labs' looks.
LOOK_SWAP_TOGGLE = "Show each cell in both training labs' looks"
LOOK_SWAP_SECTION = "in each training lab's look"


def running_app(models_dir: Path, data_dir: Path | None, images: list[Path], predictions: int,
                quick: bool = False, look_swap: bool = False) -> dict:
    """Cold start, first prediction and resident memory of `streamlit run` under `predictions` uploads.

    Every upload is compared by all models; with `look_swap` it is also
    rendered in both labs' looks and classified there (the toggle's cache
    fills as a user's would).
    """
    log = Path(tempfile.mkdtemp(prefix="bloodcell-bench-")) / "streamlit.log"
    results: dict = {}
    with app_server(models_dir, data_dir, log) as server:
        process, started = server.process, server.started
        results["cold_start_healthy_s"] = round(time.perf_counter() - started, 2)
        results["idle_rss_mb"] = _memory_mb(process.pid)[0]
        chromium = find_chromium_binary()
        if chromium is None:
            results["first_prediction_s"] = None
            results["note"] = "Playwright or Chromium missing: no browser-driven figures"
            return results
        from playwright.sync_api import sync_playwright

        models = available_models(models_dir)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            try:
                page.goto(f"{server.url}/predict", wait_until="domcontentloaded")
                upload_and_wait(page, images[0], 1, replace=False)
                results["first_prediction_s"] = round(time.perf_counter() - started, 2)
                if len(models) > 1:
                    page.get_by_text("Compare with").first.click()
                    wait_settled(page, len(models))
                if look_swap:
                    page.get_by_text(LOOK_SWAP_TOGGLE).first.click()
                    # The rerun's section heading, before the next upload goes in.
                    page.get_by_text(LOOK_SWAP_SECTION).first.wait_for(timeout=120_000)
                    wait_settled(page, len(models))
                    # Each rendering is captioned "As <lab> would show it; ...".
                    results["look_swap_renderings_drawn"] = page.get_by_text("would show it").count()
                # Resident memory after every quarter of the uploads: a plateau is a
                # bounded cache filling up, steady growth to the end is a leak.
                quarters = {max(1, predictions * q // 4) for q in range(1, 5)}
                marks = {}
                for index in range(1, predictions + 1):
                    # Quick runs keep every upload: wait for all their verdicts, so
                    # that each new file goes into an app that has finished its run.
                    expected = len(models) * (index + 1 if quick else 1)
                    upload_and_wait(page, images[(index + 1) % len(images)], expected, replace=not quick)
                    if index in quarters:
                        marks[index] = _memory_mb(process.pid)[0]
            except Exception as error:
                raise RuntimeError(f"the app benchmark stopped: {error}\n{_page_and_log(page, log)}") from error
            finally:
                browser.close()
        current, peak = _memory_mb(process.pid)
        results.update(
            app_predictions=predictions, models_loaded=len(models), look_swap=look_swap,
            rss_after_half_mb=marks.get(predictions // 2), rss_after_all_mb=marks.get(predictions),
            rss_growth_second_half_mb=round(marks.get(predictions, 0) - marks.get(predictions // 2, 0), 1),
            rss_trace_mb=" ".join(f"{index}:{mb}" for index, mb in sorted(marks.items())),
            peak_rss_mb=peak,
        )
    return results


def run_benchmarks(model: str | None = None, models_dir: Path | None = None, data_dir: Path | None = None,
                   quick: bool = False, predictions: int | None = None, look_swap: bool = False) -> dict:
    models_dir = resolve_models_dir(models_dir)
    data_dir = resolve_data_dir(data_dir)
    names = available_models(models_dir)
    model = model or (DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else DEFAULT_MODEL))
    runs, batch, default_predictions = (10, 32, 4) if quick else (100, 200, 200)
    predictions = default_predictions if predictions is None else predictions
    if predictions < 2:
        raise BloodcellError("--predictions must be at least 2")
    if look_swap and not (models_dir / LOOKS_FILE).is_file():
        raise BloodcellError(f"--look-swap needs {models_dir / LOOKS_FILE} (write it with: python -m bloodcell looks)")
    images = benchmark_images(data_dir if data_dir.is_dir() else None, max(batch, predictions + 2))
    results = {
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "platform": sys.platform,
                    "python": sys.version.split()[0]},
        "quick": quick,
        **in_process(model, models_dir, images, runs, batch),
        **running_app(models_dir, data_dir if data_dir.is_dir() else None, images, predictions, quick, look_swap),
    }
    return results


def format_table(results: dict) -> str:
    rows = [(key, value) for key, value in results.items() if not isinstance(value, dict)]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)


def main(json_out: str | None, model: str | None, models_dir, data_dir, quick: bool,
         predictions: int | None = None, look_swap: bool = False) -> dict:
    results = run_benchmarks(model, models_dir, data_dir, quick, predictions, look_swap)
    print(format_table(results))
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=1) + "\n")
    return results
