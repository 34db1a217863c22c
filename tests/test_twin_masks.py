"""The twin-mask benchmark compares the mask found on a twin with the cell that was pasted there."""

from __future__ import annotations

from benchmarks.twin_masks import iou, pasted_cell
from bloodcell.cellmask import find_cell
from bloodcell.counterfactual import as_other_lab, lab_look
from drawn_fields import draw_field


def test_pasted_cell_is_where_the_twin_shows_the_cell():
    image, truth = draw_field("peach", seed=5)
    mask = find_cell(image)
    assert iou(pasted_cell(mask, 1.0), mask.cell) > 0.95
    blue_white = lab_look([draw_field("blue-white", seed=s)[0] for s in range(4)])
    for zoom in (0.8, 1.25):
        twin = as_other_lab(image, blue_white, field_index=1, mask=mask, zoom=zoom)
        pasted = pasted_cell(mask, zoom)
        assert abs(pasted.sum() / mask.cell.sum() - zoom ** 2) < 0.1 * zoom ** 2
        found = find_cell(twin).cell
        assert iou(pasted, found) > 0.7
        # The zoom is followed: the unzoomed mask fits the twin's cell far worse.
        assert iou(pasted, found) > iou(mask.cell, found) + 0.2
