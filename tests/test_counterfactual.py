"""Counterfactual images keep the cell and take the other lab's look."""

from __future__ import annotations

import numpy as np

from bloodcell.cellmask import find_cell
from bloodcell.counterfactual import as_other_lab, empty_field, lab_look
from bloodcell.stain import stain_stats
from drawn_fields import LOOKS, draw_field


def test_empty_field_has_no_cell_left():
    image, _ = draw_field("peach", seed=3)
    assert find_cell(image).found
    assert not find_cell(empty_field(image)).found


def test_cell_takes_the_other_labs_stain_and_field():
    blue_white = lab_look([draw_field("blue-white", seed=s)[0] for s in range(4)])
    image, truth = draw_field("peach", seed=5)
    twin = np.asarray(as_other_lab(image, blue_white, field_index=1), np.float32)
    assert twin.shape == np.asarray(image).shape
    # The cell now carries the blue-white lab's average cell stain...
    mask = find_cell(image).cell
    np.testing.assert_allclose(stain_stats(twin, mask).mean, blue_white.cell_stain.mean, atol=3)
    # ...and the far background is the blue-white field's colour, not peach.
    corner = twin[:20, :20].reshape(-1, 3).mean(axis=0)
    assert np.abs(corner - LOOKS["blue-white"]["background"]).max() < 8
    # The cell is still where it was.
    assert find_cell(twin).found
    moved = find_cell(twin).cell
    assert (moved & truth).sum() / (moved | truth).sum() > 0.7


def test_lab_look_measures_cell_size_and_zoom_rescales_the_cell():
    blue_white = lab_look([draw_field("blue-white", seed=s)[0] for s in range(4)])
    # Drawn cells have radius 0.18-0.24 of the image side: diameter 0.36-0.48.
    assert 0.34 < blue_white.cell_size < 0.5
    image, _ = draw_field("peach", seed=5)
    same = find_cell(as_other_lab(image, blue_white)).cell.sum()
    smaller = find_cell(as_other_lab(image, blue_white, zoom=0.7)).cell.sum()
    assert 0.4 < smaller / same < 0.6  # area scales with the square of the zoom (0.49)
