"""Counterfactual images keep the cell and take the other lab's look."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from bloodcell.cellmask import find_cell
from bloodcell.config import CLASS_NAMES, SOURCE_LAB
from bloodcell.counterfactual import (as_other_lab, cell_detail, counterfactual_of, empty_field, lab_look, lab_looks,
                                     match_detail)
from bloodcell.data import build_manifest, scan_dataset
from bloodcell.stain import stain_stats
from conftest import DRAWN_COLOURS
from drawn_fields import LOOKS, draw_field


def test_empty_field_has_no_cell_left():
    image, _ = draw_field("peach", seed=3)
    assert find_cell(image).found
    assert not find_cell(empty_field(image)).found


def test_empty_field_paints_the_cell_in_the_fields_background_colour_not_its_neighbours():
    """A cell hugged by red cells: the patch takes the field's plasma colour, so it is no object of its own."""
    look = LOOKS["blue-white"]
    image = Image.new("RGB", (360, 360), look["background"])
    draw = ImageDraw.Draw(image)
    for angle in np.linspace(0, 2 * np.pi, 10, endpoint=False):  # a ring of touching red cells
        x, y = 180 + 95 * np.cos(angle), 180 + 95 * np.sin(angle)
        draw.ellipse((x - 38, y - 38, x + 38, y + 38), fill=look["red_cell"])
    draw.ellipse((120, 120, 240, 240), fill=look["cytoplasm"])
    draw.ellipse((145, 145, 215, 215), fill=look["nucleus"])
    mask = find_cell(image)
    assert mask.found
    empty = empty_field(image, mask)
    patch = empty[mask.cell].astype(np.float32)
    np.testing.assert_allclose(patch.mean(axis=0), look["background"], atol=2)
    # Nothing in the patch differs from the background the way a cell body would.
    assert np.linalg.norm(patch - np.asarray(look["background"], np.float32), axis=-1).max() < 3


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


def test_twin_restained_by_parts_takes_the_other_labs_nucleus_and_cytoplasm_each():
    peach = lab_look([draw_field("peach", seed=s)[0] for s in range(4)])
    blue_white = lab_look([draw_field("blue-white", seed=s)[0] for s in range(4, 8)])
    assert blue_white.nucleus_stain and blue_white.cytoplasm_stain
    # Measured on the drawn fields' own flat colours: the nucleus is darker than the cytoplasm.
    assert blue_white.nucleus_stain.mean[0] < blue_white.cytoplasm_stain.mean[0] - 20
    looks = {"PBC Barcelona": peach, "Munich AML": blue_white}
    image, _ = draw_field("peach", seed=9)
    mask = find_cell(image)
    nucleus = ndimage.binary_erosion(mask.nucleus & mask.cell, iterations=3)
    cytoplasm = ndimage.binary_erosion(mask.cell & ~mask.nucleus, iterations=3)
    for part in (None, "stain"):
        twin = np.asarray(counterfactual_of(image, "basophil", looks, 0, mask, part=part, stain_parts=True),
                          np.float32)
        for inside, target in ((nucleus, blue_white.nucleus_stain), (cytoplasm, blue_white.cytoplasm_stain)):
            np.testing.assert_allclose(stain_stats(twin, inside).mean, target.mean, atol=4)
    # Without stain_parts the whole cell takes the look's cell stain, as the audit's twins do.
    whole = np.asarray(counterfactual_of(image, "basophil", looks, 0, mask, part="stain"), np.float32)
    np.testing.assert_allclose(stain_stats(whole, mask.cell).mean, blue_white.cell_stain.mean, atol=3)


def test_twin_restained_by_parts_falls_back_to_the_whole_cell_without_part_stains():
    blue_white = lab_look([draw_field("blue-white", seed=s)[0] for s in range(4)])
    image, _ = draw_field("peach", seed=5)
    unmeasured = replace(blue_white, nucleus_stain=None, cytoplasm_stain=None)
    np.testing.assert_array_equal(np.asarray(as_other_lab(image, unmeasured, stain_parts=True)),
                                  np.asarray(as_other_lab(image, blue_white)))


def test_lab_look_measures_cell_size_and_zoom_rescales_the_cell():
    blue_white = lab_look([draw_field("blue-white", seed=s)[0] for s in range(4)])
    # Drawn cells have radius 0.18-0.24 of the image side: diameter 0.36-0.48.
    assert 0.34 < blue_white.cell_size < 0.5
    image, _ = draw_field("peach", seed=5)
    same = find_cell(as_other_lab(image, blue_white)).cell.sum()
    smaller = find_cell(as_other_lab(image, blue_white, zoom=0.7)).cell.sum()
    assert 0.4 < smaller / same < 0.6  # area scales with the square of the zoom (0.49)


def _textured(image, truth, sigma: float, seed: int = 0):
    """`image` with a granular texture (smoothed by `sigma` pixels) inside the cell."""
    rng = np.random.default_rng(seed)
    grain = ndimage.gaussian_filter(rng.normal(0, 40, truth.shape), sigma)[..., None]
    pixels = np.asarray(image, np.float32) + np.where(truth[..., None], grain, 0)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_cell_detail_measures_texture_not_the_outline():
    image, truth = draw_field("peach", seed=2)
    flat = cell_detail(np.asarray(image), truth)  # only the nucleus' edge inside
    sharp = cell_detail(np.asarray(_textured(image, truth, 0.7)), truth)
    soft = cell_detail(np.asarray(_textured(image, truth, 2.0)), truth)
    assert flat + 1 < soft < sharp / 2
    # The cell's outline against the field is not counted: a flat disc has none.
    disc = np.zeros((100, 100, 3), np.float32)
    yy, xx = np.mgrid[:100, :100]
    inside = (yy - 50) ** 2 + (xx - 50) ** 2 < 30 ** 2
    disc[inside] = 200
    assert cell_detail(disc, inside) == 0


def test_match_detail_blurs_or_sharpens_to_the_target():
    image, truth = draw_field("blue-white", seed=4)
    pixels = np.asarray(_textured(image, truth, 1.2), np.float32)
    own = cell_detail(pixels, truth)
    for ratio in (0.3, 0.7, 2.0, 3.0):
        matched = match_detail(pixels, truth, own * ratio)
        assert abs(cell_detail(matched, truth) / own - ratio) < 0.05 * ratio


def _match_detail_on_the_whole_photo(pixels, mask, target):
    """match_detail's definition: bisect the strength, measuring each try on the whole photo."""
    from bloodcell.counterfactual import DETAIL_SEARCH_STEPS, SHARPEST, SOFTEST_BLUR, refocus

    low, high = (-SOFTEST_BLUR, 0.0) if cell_detail(pixels, mask) > target else (0.0, SHARPEST)
    for _ in range(DETAIL_SEARCH_STEPS):
        middle = (low + high) / 2
        if cell_detail(refocus(pixels, middle), mask) > target:
            high = middle
        else:
            low = middle
    return refocus(pixels, (low + high) / 2)


@pytest.mark.parametrize("corner", [False, True])
def test_match_detail_searches_on_the_cells_box_with_the_same_result(corner):
    """The search is cropped to the cell for speed; it must pick the very strength the whole photo gives."""
    from bloodcell.counterfactual import SHARPEST, SOFTEST_BLUR, _mean_detail, _search_region, refocus

    image, truth = draw_field("peach", seed=6)
    pixels = np.asarray(_textured(image, truth, 1.0), np.float32)
    if corner:  # a cell cut by the photo's edge: the box meets the border, where the blur reflects
        rows, cols = np.nonzero(truth)
        pixels, truth = pixels[rows.min() + 10:, cols.min() + 10:], truth[rows.min() + 10:, cols.min() + 10:]
    crop, inside = _search_region(pixels, truth)
    assert crop.size < pixels.size
    for strength in (-SOFTEST_BLUR, -1.3, 0.0, 0.7, SHARPEST):  # each try measures what the whole photo would
        assert _mean_detail(refocus(crop, strength), inside) == cell_detail(refocus(pixels, strength), truth)
    own = cell_detail(pixels, truth)
    for ratio in (0.4, 2.5):
        np.testing.assert_array_equal(match_detail(pixels, truth, own * ratio),
                                      _match_detail_on_the_whole_photo(pixels, truth, own * ratio))


def test_twin_takes_the_other_labs_detail():
    image, truth = draw_field("peach", seed=6)
    image = _textured(image, truth, 0.8, seed=1)
    soft_lab = lab_look([_textured(*draw_field("blue-white", seed=s), 2.0, seed=s) for s in range(4)])
    sharp_lab = lab_look([_textured(*draw_field("peach", seed=s), 0.8, seed=s) for s in range(4)])
    assert soft_lab.detail < sharp_lab.detail / 2
    ratio = soft_lab.detail / sharp_lab.detail
    twin = as_other_lab(image, soft_lab, detail_ratio=ratio)
    own = cell_detail(np.asarray(image), truth)
    # Measured away from the seam; the re-staining changes contrast a little too.
    assert abs(cell_detail(np.asarray(twin), truth) / own - ratio) < 0.25 * ratio
    unchanged = as_other_lab(image, soft_lab)
    assert cell_detail(np.asarray(unchanged), truth) > own / 2


def test_counterfactual_parts_swap_one_part_of_the_look_each():
    looks = {"PBC Barcelona": lab_look([draw_field("peach", seed=s)[0] for s in range(4)]),
             "Munich AML": lab_look([draw_field("blue-white", seed=s)[0] for s in range(4, 8)])}
    looks["Munich AML"].red_cell_size = looks["PBC Barcelona"].red_cell_size * 1.4
    image, _ = draw_field("peach", seed=9)
    mask = find_cell(image)

    def corner(twin):
        return np.asarray(twin, np.float32)[:20, :20].reshape(-1, 3).mean(axis=0)

    def stain(twin):
        return np.asarray(stain_stats(np.asarray(twin, np.float32), mask.cell).mean)

    munich, barcelona = looks["Munich AML"].cell_stain.mean, looks["PBC Barcelona"].cell_stain.mean
    stained = counterfactual_of(image, "basophil", looks, 0, mask, part="stain")
    assert np.abs(stain(stained) - munich).max() < 3
    assert np.abs(corner(stained) - LOOKS["peach"]["background"]).max() < 8
    fielded = counterfactual_of(image, "basophil", looks, 0, mask, part="field")
    assert np.abs(stain(fielded) - barcelona).max() < 3
    assert np.abs(corner(fielded) - LOOKS["blue-white"]["background"]).max() < 8
    zoomed = counterfactual_of(image, "basophil", looks, 0, mask, part="magnification")
    # Munich's red cells are larger in the frame here, so a Barcelona cell grows.
    assert find_cell(zoomed).cell.sum() > 1.5 * mask.cell.sum()
    with pytest.raises(ValueError, match="unknown counterfactual part"):
        counterfactual_of(image, "basophil", looks, 0, mask, part="scanner")


def test_lab_looks_measure_each_lab_on_its_own_training_images(drawn_dataset):
    manifest = build_manifest(scan_dataset(drawn_dataset))
    looks = lab_looks(manifest, drawn_dataset)
    assert set(looks) == set(SOURCE_LAB.values())
    # The same split and seed give the same looks: the audit and the twins recipe share them.
    again = lab_looks(manifest, drawn_dataset)
    for lab, look in looks.items():
        np.testing.assert_array_equal(look.cell_stain.mean, again[lab].cell_stain.mean)
    # Each lab's empty fields come from its own classes' drawn backgrounds.
    for lab, look in looks.items():
        own = [np.asarray(DRAWN_COLOURS[c][0], np.float32) for c in CLASS_NAMES if SOURCE_LAB[c] == lab]
        corner = np.asarray(look.backgrounds[0], np.float32)[:4, :4].reshape(-1, 3).mean(axis=0)
        assert min(np.abs(corner - colour).max() for colour in own) < 12
