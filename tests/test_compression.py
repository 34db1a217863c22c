"""JPEG compression read from file headers and put on other images."""

import io

import numpy as np
from PIL import Image

from bloodcell.compression import JpegSettings, common_jpeg_settings, compress_like, jpeg_settings, standard_table


def _noisy(size: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.normal(128, 40, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _block_edge_ratio(image: Image.Image) -> float:
    """Mean jump across 8-pixel block edges over the mean jump elsewhere (1: no blocks)."""
    grey = np.asarray(image.convert("L"), np.float32)
    jumps = np.abs(np.diff(grey, axis=1))
    at_edges = (np.arange(jumps.shape[1]) % 8) == 7
    return float(jumps[:, at_edges].mean() / jumps[:, ~at_edges].mean())


def test_jpeg_settings_read_the_quality_and_colour_subsampling(tmp_path):
    _noisy().save(tmp_path / "q75.jpg", quality=75, subsampling=0)
    _noisy().save(tmp_path / "q95.jpg", quality=95, subsampling=2)
    low, high = jpeg_settings(tmp_path / "q75.jpg"), jpeg_settings(tmp_path / "q95.jpg")
    assert (low.subsampling, high.subsampling) == (0, 2)
    assert low.qtables[0][:2] == (8, 6) and high.qtables[0][:2] == (2, 1)  # libjpeg's tables at 75 and 95
    assert all(len(table) == 64 for table in low.qtables)
    assert (low.quality, high.quality) == (75, 95) and low.standard and high.standard
    assert low.describe() == "JPEG quality 75, colour 4:4:4" and high.describe() == "JPEG quality 95, colour 4:2:0"


def test_quality_is_estimated_for_a_table_that_is_not_libjpegs():
    tables = (tuple(v + 1 for v in standard_table(80)), standard_table(80))
    settings = JpegSettings(tables, 1)
    assert settings.quality in (78, 79, 80) and not settings.standard
    assert settings.describe().startswith("JPEG quality about ") and settings.describe().endswith("4:2:2")
    assert [standard_table(q)[0] for q in (1, 50, 100)] == [255, 16, 1]


def test_jpeg_settings_are_none_for_other_or_broken_files(tmp_path):
    _noisy().save(tmp_path / "cell.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert jpeg_settings(tmp_path / "cell.png") is None
    assert jpeg_settings(tmp_path / "broken.jpg") is None
    assert jpeg_settings(tmp_path / "missing.jpg") is None


def test_common_jpeg_settings_take_what_most_files_share(tmp_path):
    for n, quality in enumerate([75, 75, 90]):
        _noisy(seed=n).save(tmp_path / f"{n}.jpg", quality=quality, subsampling=0)
    _noisy().save(tmp_path / "x.png")
    paths = sorted(tmp_path.iterdir())
    assert common_jpeg_settings(paths) == jpeg_settings(tmp_path / "0.jpg")
    assert common_jpeg_settings([tmp_path / "x.png"]) is None


def test_compress_like_repeats_the_files_compression(tmp_path):
    _noisy(seed=1).save(tmp_path / "q75.jpg", quality=75, subsampling=0)
    settings = jpeg_settings(tmp_path / "q75.jpg")
    image = _noisy(seed=2)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75, subsampling=0)
    expected = np.asarray(Image.open(buffer).convert("RGB"))
    compressed = compress_like(image, settings)
    assert compressed.mode == "RGB" and compressed.size == image.size
    np.testing.assert_array_equal(np.asarray(compressed), expected)


def test_compress_like_at_low_quality_leaves_block_edges():
    rows, cols = np.mgrid[0:64, 0:64]
    smooth = 128 + 60 * np.sin(cols / 5.0 + rows / 9.0) + 30 * np.cos(rows / 4.0)
    image = Image.fromarray(smooth.astype(np.uint8)).convert("RGB")
    coarse = JpegSettings(tuple(tuple([40] * 64) for _ in range(2)), 0)
    assert _block_edge_ratio(image) < 1.05
    assert _block_edge_ratio(compress_like(image, coarse)) > 1.4
