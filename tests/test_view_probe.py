"""The view probe: three views per photo, a linear probe per view, with and without twins."""

from __future__ import annotations

import numpy as np

from benchmarks.view_probe import VIEWS, _spread, probe_figures, views_of
from bloodcell.cellview import cell_view, grey_cell_view, nucleus_view
from drawn_fields import draw_field


def test_views_of_a_photo_are_the_cell_grey_and_nucleus_views():
    image, _ = draw_field("blue-white", seed=3)
    views = views_of(image)
    assert len(views) == len(VIEWS)
    np.testing.assert_array_equal(views[0], cell_view(image, 224))
    np.testing.assert_array_equal(views[1], grey_cell_view(image, 224))
    np.testing.assert_array_equal(views[2], nucleus_view(image, 224))


def _features(labels: np.ndarray, informative_view: int, rng) -> np.ndarray:
    """(N, 3 views, 8) noise, with the class written into one view (feature k high for class k)."""
    features = rng.normal(0, 1, (len(labels), len(VIEWS), 8))
    features[np.arange(len(labels)), informative_view, labels] += 6
    return features


def test_probe_figures_measure_each_view_with_and_without_twins():
    rng = np.random.default_rng(0)
    labels = {split: np.tile(np.arange(5), 20) for split in ("train", "val", "test")}
    # Photos: only the cell view knows the class. Twins: only the nucleus
    # view does, so adding them changes that view's probe alone.
    features = {split: _features(y, 0, rng) for split, y in labels.items()}
    twins = _features(labels["train"], 2, rng)
    cross_labels = np.full(30, 4)
    cross = _features(cross_labels, 2, rng)
    report = probe_figures(features, labels, twins, cross, cross_labels)
    assert list(report) == ["cell view", "cell view + twins", "grey cell view", "grey cell view + twins",
                            "nucleus view", "nucleus view + twins"]
    assert report["cell view"]["val"] > 0.9 and report["cell view"]["test"] > 0.9
    assert report["grey cell view"]["val"] < 0.5
    assert report["nucleus view + twins"]["cross_source"] > 0.9
    assert report["nucleus view"]["cross_source"] < report["nucleus view + twins"]["cross_source"] - 0.3
    assert sum(report["nucleus view"]["cross_source_answers"].values()) == 30


def test_spread_keeps_both_ends_and_every_class_of_a_sorted_list():
    items = [("a", 0)] * 10 + [("b", 1)] * 10
    assert _spread(items, None) == items
    picked = _spread(items, 4)
    assert len(picked) == 4 and picked[0] == items[0] and picked[-1] == items[-1]
    assert {label for _, label in picked} == {0, 1}
