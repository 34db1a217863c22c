"""Every kind of bad or odd input gets a result or a clear message, in the
decoder, the CLI and the app's upload path; a bounded fuzz run of the decoder."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bloodcell.errors import ImageReadError
from bloodcell.imaging import read_image
from bloodcell.service import ModelService
from conftest import draw_cell, encode
from corpus import build_corpus

CORPUS = build_corpus()
HANG_GUARD_S = 300  # a generous bound that only a hang would reach


def test_corpus_has_at_least_twenty_kinds():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("name, data, expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_decoder(name, data, expected):
    if expected == "ok":
        image = read_image(data)
        assert image.mode == "RGB" and min(image.size) >= 8
    else:
        with pytest.raises(ImageReadError, match=expected):
            read_image(data)


def _check_upload_path(service: ModelService) -> None:
    for name, data, expected in CORPUS:
        result = service.analyse(name, data)
        if expected == "ok":
            assert result.ok and result.heatmap is not None, (name, result.error)
            assert np.isfinite(result.probabilities).all(), name
        else:
            assert not result.ok and expected in result.error, (name, result.error)


def test_app_upload_path(tiny_models_dir):
    _check_upload_path(ModelService.load("cnn", tiny_models_dir))


@pytest.mark.parametrize("name", ["cellfocus", "cellgrey", "cellfill", "celltexture", "celltwin"])
def test_app_upload_path_through_the_cell_views(name, shipped_models):
    """Odd sizes and modes also go through cell finding, stain transfer and the detail cap."""
    _check_upload_path(ModelService.load(name, shipped_models))


def test_cli_predict_over_the_corpus(tiny_models_dir, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, data, _ in CORPUS:
        (folder / name).write_bytes(data)
    out = tmp_path / "predictions.csv"
    result = subprocess.run(
        [sys.executable, "-m", "bloodcell", "-q", "predict", "--model", "cnn", "--models-dir",
         str(tiny_models_dir), *[str(folder / name) for name, _, _ in CORPUS], "--csv", str(out)],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = {row["file"].rsplit("/", 1)[-1]: row for row in csv.DictReader(out.open())}
    assert len(rows) == len(CORPUS)
    for name, _, expected in CORPUS:
        if expected == "ok":
            assert rows[name]["predicted_class"] and not rows[name]["error"], name
        else:
            assert expected in rows[name]["error"], (name, rows[name]["error"])


SEED_IMAGES = [encode(draw_cell("monocyte", size=40), fmt) for fmt in ("PNG", "JPEG", "BMP", "TIFF", "GIF")]


def assert_rgb_or_clear_error(data: bytes) -> None:
    try:
        image = read_image(data)
    except ImageReadError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert image.mode == "RGB"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    assert_rgb_or_clear_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEED_IMAGES), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
       st.integers(0, 10_000))
def test_fuzz_mutated_images(seed, flips, cut):
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    assert_rgb_or_clear_error(bytes(data[: max(1, len(data) - cut % len(data))]))
