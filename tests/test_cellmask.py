"""The cell mask on drawn cells whose true outline is known, and on real cells."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bloodcell.cellmask import find_cell, nucleus_threshold, otsu_threshold
from drawn_fields import LOOKS, draw_field

def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("look", sorted(LOOKS))
@pytest.mark.parametrize("lobes", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_matches_a_drawn_cell(look, lobes, seed):
    image, truth = draw_field(look, seed=seed, lobes=lobes)
    mask = find_cell(image)
    assert mask.found
    assert iou(mask.cell, truth) > 0.8
    # The nucleus lies inside the cell, and the box holds the whole cell.
    assert (mask.nucleus & ~mask.cell).sum() <= 0.02 * mask.nucleus.sum()
    left, top, right, bottom = mask.box()
    rows, cols = np.nonzero(truth)
    assert left <= cols.min() + 3 and right >= cols.max() - 3
    assert top <= rows.min() + 3 and bottom >= rows.max() - 3
    assert right - left == pytest.approx(bottom - top, abs=2)


def test_parts_split_the_cell_into_nucleus_and_cytoplasm():
    mask = find_cell(draw_field("peach", seed=3)[0])
    nucleus, cytoplasm = mask.parts()
    assert nucleus.any() and cytoplasm.any() and not (nucleus & cytoplasm).any()
    np.testing.assert_array_equal(nucleus | cytoplasm, mask.cell)


def test_lobes_of_one_nucleus_count_as_one():
    image, _ = draw_field("blue-white", lobes=3)
    assert find_cell(image).components == 1


def test_blank_slide_and_flat_colours_have_no_cell():
    for colour in [(245, 222, 196), (255, 255, 255), (0, 0, 0), (120, 60, 170)]:
        mask = find_cell(Image.new("RGB", (200, 150), colour))
        assert not mask.found
        assert mask.box() == (25, 0, 175, 150)  # the centred square


def test_several_cells_are_counted():
    field = Image.new("RGB", (720, 720))
    for index in range(4):
        cell, _ = draw_field("peach", seed=index)
        field.paste(cell, ((index % 2) * 360, (index // 2) * 360))
    assert find_cell(field).components >= 3


def test_tiny_and_odd_shapes_do_not_crash():
    for size in [(8, 8), (1000, 10), (10, 1000)]:
        mask = find_cell(Image.new("RGB", size, (240, 220, 200)))
        assert mask.cell.shape == (size[1], size[0])


def test_otsu_splits_two_tones():
    values = np.concatenate([np.full(500, 20.0), np.full(100, 180.0)])
    assert 20 < otsu_threshold(values) < 180


def test_second_split_separates_nucleus_from_many_red_cells():
    # background 15, red cells 80 (many), nucleus 170 (few): the nucleus alone is above.
    values = np.concatenate([np.full(5000, 15.0), np.full(4000, 80.0), np.full(300, 170.0)])
    assert 80 < nucleus_threshold(values) < 170


def test_real_cells_are_found(real_data):
    from bloodcell.config import CLASS_NAMES

    for label in CLASS_NAMES:
        for path in sorted((real_data / label).glob("*.jpg"))[:5]:
            mask = find_cell(Image.open(path))
            assert mask.found, path.name
            assert 0.03 < mask.cell_fraction < 0.9, path.name


def test_problem_names_what_is_not_one_centred_cell():
    centred, _ = draw_field("peach", seed=1)
    assert find_cell(centred).problem is None
    assert find_cell(Image.new("RGB", (300, 300), (245, 222, 196))).problem == "no stained nucleus found"
    corner = Image.new("RGB", (720, 720), (245, 222, 196))
    corner.paste(centred, (0, 0))
    assert "middle" in find_cell(corner).problem
    field = Image.new("RGB", (720, 720))
    for index in range(4):
        cell, _ = draw_field("blue-white", seed=index)
        field.paste(cell, ((index % 2) * 360, (index // 2) * 360))
    assert find_cell(field).problem is not None


def test_a_greyscale_photo_is_named_as_such(real_data):
    """Without colour there is no stain to find a nucleus by; the user is told that, not just 'no nucleus'."""
    photo = Image.open(sorted((real_data / "monocyte").glob("*.jpg"))[0])
    assert find_cell(photo).problem is None and not find_cell(photo).colourless
    grey = find_cell(photo.convert("L").convert("RGB"))
    assert grey.colourless and not grey.found and "greyscale" in grey.problem
