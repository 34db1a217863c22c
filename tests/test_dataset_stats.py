"""Dataset summaries for the app, on drawn images."""

from __future__ import annotations

import numpy as np

from bloodcell.config import CLASS_NAMES
from bloodcell.dataset_stats import file_kinds, gallery_page, mean_colour, overview, thumbnail
from conftest import make_drawn_dataset


def test_overview_counts_and_missing_folder(tmp_path):
    root = make_drawn_dataset(tmp_path / "d", per_class=3)
    found = overview(root)
    assert list(found.files) == list(CLASS_NAMES)
    assert found.counts["basophil"] == 4 and found.total == 16  # one duplicate copy
    assert overview(tmp_path / "nothing") is None
    empty = tmp_path / "empty"
    (empty / "monocyte").mkdir(parents=True)
    assert overview(empty) is None


def test_sizes_colours_pages_and_thumbnails(tmp_path):
    root = make_drawn_dataset(tmp_path / "d", per_class=4)
    paths = overview(root).files["myeloblast"]
    (root / "myeloblast" / "zz_broken.png").write_bytes(b"nope")
    mean, spread = mean_colour(paths)
    assert mean.shape == (3,) and np.all(mean > 0) and np.all(spread >= 0)
    assert gallery_page(paths, 0, 3, None) == paths[:3]
    assert gallery_page(paths, 1, 3, None) == paths[3:]
    shuffled = gallery_page(paths, 0, 4, shuffle_seed=7)
    assert sorted(shuffled) == sorted(paths) and shuffled == gallery_page(paths, 0, 4, shuffle_seed=7)
    assert thumbnail(paths[0], side=20).size == (20, 20)
    assert thumbnail(root / "myeloblast" / "zz_broken.png") is None


def test_file_kinds_give_each_size_and_how_it_was_saved(tmp_path):
    root = make_drawn_dataset(tmp_path / "d", per_class=4)  # two JPEGs (PIL's default: quality 75, 4:2:0), two PNGs
    paths = overview(root).files["monocyte"]
    broken = root / "monocyte" / "zz_broken.jpg"
    broken.write_bytes(b"not an image")
    assert file_kinds([*paths, broken]) == {("48x48", "JPEG quality 75, colour 4:2:0"): 2, ("48x48", "PNG"): 2,
                                            ("unreadable", "unreadable"): 1}
