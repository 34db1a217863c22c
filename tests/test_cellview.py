"""The cell view removes what tells the labs apart and keeps the cell."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bloodcell.cellview import BACKGROUND_GREY, REFERENCE_STAIN, cell_view, cell_view_and_mask
from bloodcell.imaging import CELL_VIEW, to_model_input
from bloodcell.stain import stain_stats
from drawn_fields import draw_field


def test_view_is_square_grey_outside_and_in_reference_stain():
    image, _ = draw_field("peach", seed=4)
    view, inside = cell_view_and_mask(image, 96)
    assert view.shape == (96, 96, 3) and view.dtype == np.float32
    assert inside.mean() > 0.3  # the cell fills much of the frame
    assert np.all(view[~inside] == BACKGROUND_GREY)
    # Within a few LAB units: colours outside the sRGB gamut are clipped.
    np.testing.assert_allclose(stain_stats(view, inside).mean, REFERENCE_STAIN.mean, atol=4)


def test_same_cell_in_two_labs_looks_alike_in_the_view():
    """The lab's look (background, stain) mostly disappears; the raw images differ far more."""
    peach, _ = draw_field("peach", seed=7)
    blue, _ = draw_field("blue-white", seed=7)
    raw = np.abs(np.asarray(peach, np.float32) - np.asarray(blue, np.float32)).mean()
    views = np.abs(cell_view(peach, 96) - cell_view(blue, 96)).mean()
    assert views < raw / 3, (views, raw)


def test_model_input_uses_the_cell_view():
    image, _ = draw_field("blue-white", seed=2)
    np.testing.assert_array_equal(to_model_input(image, 64, CELL_VIEW), cell_view(image, 64))


def test_no_cell_gives_a_centred_stain_normalised_square():
    view = cell_view(Image.new("RGB", (300, 200), (240, 230, 220)), 48)
    assert view.shape == (48, 48, 3) and np.isfinite(view).all()
