"""A fast smoke run of the benchmark code (figures are printed, never asserted)."""

from __future__ import annotations

import json

from bloodcell.bench import benchmark_images, format_table
from bloodcell.cli import main

REQUIRED = ["predict_p50_ms", "predict_p95_ms", "predict_gradcam_p50_ms", "batch_images_per_s",
            "cold_start_healthy_s", "first_prediction_s", "peak_rss_mb", "gradcam_p50_ms",
            "gradcam_plus_plus_p50_ms", "scorecam_p50_ms", "smoothgrad_p50_ms"]


def test_drawn_images_when_no_dataset():
    images = benchmark_images(None, 3)
    assert len(images) == 3 and all(p.is_file() for p in images)


def test_quick_bench_reports_every_figure(tiny_models_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--model", "cnn", "--models-dir", str(tiny_models_dir),
                 "--data", str(tmp_path / "no-data"), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    from test_browser import find_chromium  # skips locally, fails in CI, without Chromium

    find_chromium()
    for key in REQUIRED:
        assert results[key] is not None and results[key] > 0, key
    assert results["rss_growth_second_half_mb"] is not None
    # One resident-memory reading after each quarter of the 4 quick uploads.
    assert [int(mark.split(":")[0]) for mark in results["rss_trace_mb"].split()] == [1, 2, 3, 4]
    printed = capsys.readouterr().out
    assert "predict_p50_ms" in printed and "peak_rss_mb" in printed


def test_quick_bench_with_the_look_swap_fills_its_cache(tiny_models_dir, tmp_path):
    """The app's memory is traced with every upload also shown in both labs' looks."""
    import shutil

    from bloodcell.config import PROJECT_ROOT
    from bloodcell.lookswap import LOOKS_FILE

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    assert main(["bench", "--quick", "--look-swap", "--model", "cnn", "--models-dir", str(models),
                 "--data", str(tmp_path / "no-data"), "--json", str(tmp_path / "no-looks.json")]) == 2
    shutil.copy(PROJECT_ROOT / "models" / LOOKS_FILE, models / LOOKS_FILE)
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--look-swap", "--model", "cnn", "--models-dir", str(models),
                 "--data", str(tmp_path / "no-data"), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    from test_browser import find_chromium

    find_chromium()
    assert results["look_swap"] is True and results["peak_rss_mb"] > 0
    # The drawn cells here have no nucleus the cell mask accepts, so the section says why instead.
    assert results["look_swap_renderings_drawn"] == 0


def test_table_lists_scalars_only():
    table = format_table({"a": 1, "nested": {"x": 1}, "b": "two"})
    assert "a" in table and "two" in table and "nested" not in table


def test_too_few_predictions_is_a_clear_error(tiny_models_dir, tmp_path, capsys):
    assert main(["bench", "--quick", "--predictions", "1", "--models-dir", str(tiny_models_dir),
                 "--data", str(tmp_path / "no-data")]) == 2
    assert "--predictions must be at least 2" in capsys.readouterr().err
