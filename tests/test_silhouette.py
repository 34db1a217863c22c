"""The cell's silhouette and its shape measurements, on drawn cells with a known shape."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.cellmask import find_cell
from bloodcell.silhouette import (CYTOPLASM_LEVEL, NUCLEUS_LEVEL, SHAPE_FEATURE_NAMES, SILHOUETTE_SIZE,
                                  shape_features, silhouette, silhouette_picture)
from drawn_fields import draw_field


def drawn_silhouette(look: str, seed: int = 0, lobes: int = 1) -> np.ndarray:
    return silhouette(find_cell(draw_field(look, seed=seed, lobes=lobes)[0]))


def features_by_name(levels: np.ndarray) -> dict[str, float]:
    return dict(zip(SHAPE_FEATURE_NAMES, shape_features(levels)))


def test_silhouette_has_three_levels_and_the_cell_fills_its_crop():
    levels = drawn_silhouette("peach")
    assert levels.shape == (SILHOUETTE_SIZE, SILHOUETTE_SIZE)
    assert levels.min() == NUCLEUS_LEVEL and levels.max() == 1.0
    # Three flat levels; resizing blends them only along the outlines.
    on_a_level = np.isin(levels, [NUCLEUS_LEVEL, CYTOPLASM_LEVEL, 1.0])
    assert on_a_level.mean() > 0.85
    # The filled crop's 12% margin each side: the drawn disc covers about pi/4 / 1.24^2 of it.
    assert 0.4 < features_by_name(levels)["cell share of the crop"] < 0.65


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_labs_looks_give_the_same_silhouette(seed):
    # Same cell drawn in each lab's colours: the silhouette carries no colour.
    peach, blue_white = drawn_silhouette("peach", seed), drawn_silhouette("blue-white", seed)
    assert np.mean(np.abs(peach - blue_white)) < 0.03
    np.testing.assert_allclose(shape_features(peach)[:4], shape_features(blue_white)[:4], rtol=0.15)


def test_a_round_nucleus_and_a_row_of_lobes_measure_apart():
    round_nucleus = features_by_name(drawn_silhouette("peach", lobes=1))
    lobed = features_by_name(drawn_silhouette("peach", lobes=3))
    assert round_nucleus["nucleus elongation (ratio of its axes)"] < 1.3
    assert lobed["nucleus elongation (ratio of its axes)"] > 2.0
    assert lobed["nucleus share of the cell"] < round_nucleus["nucleus share of the cell"]
    assert lobed["nucleus' mean thickness over the square root of its area"] < \
        round_nucleus["nucleus' mean thickness over the square root of its area"]


def test_features_of_an_empty_or_full_silhouette_are_finite():
    for levels in (np.ones((64, 64), np.float32), np.zeros((64, 64), np.float32)):
        features = shape_features(levels)
        assert features.shape == (len(SHAPE_FEATURE_NAMES),) and np.isfinite(features).all()


def test_silhouette_picture_is_a_grey_image_of_the_three_levels():
    picture = silhouette_picture(draw_field("peach")[0], side=128)
    assert picture.mode == "L" and picture.size == (128, 128)
    values = np.asarray(picture)
    assert values.min() == 0 and values.max() == 255 and (values == 128).any()
