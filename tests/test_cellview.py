"""The cell view removes what tells the labs apart and keeps the cell."""

from __future__ import annotations

import numpy as np
import pytest
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


def _disc_mask(diameter: float, side: int = 400):
    from bloodcell.cellmask import CellMask

    yy, xx = np.mgrid[:side, :side]
    cell = (yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 < (diameter / 2) ** 2
    return CellMask(cell, cell, True, 100.0, 1)


def _share_of_view(mask) -> float:
    left, _, right, _ = mask.box()
    return mask.cell_side() / (right - left)


def test_view_zoom_predicts_the_cell_size_in_the_view_of_a_magnified_photo():
    from bloodcell.cellview import view_zoom

    for diameter in (110, 160, 220, 280):
        for zoom in (0.76, 1.3):
            expected = _share_of_view(_disc_mask(diameter * zoom)) / _share_of_view(_disc_mask(diameter))
            assert abs(view_zoom(_disc_mask(diameter), zoom) - expected) < 0.02, (diameter, zoom)
    # A large cell fills its view at any magnification; a small one sits in a
    # box of minimum size, so magnifying it shows.
    assert view_zoom(_disc_mask(200), 1.3) == pytest.approx(1.0)
    assert view_zoom(_disc_mask(110), 1.3) > 1.25
    assert view_zoom(_disc_mask(220), 0.76) > 0.8


def test_view_zoom_without_a_cell_is_one():
    from bloodcell.cellmask import find_cell
    from bloodcell.cellview import view_zoom

    assert view_zoom(find_cell(Image.new("RGB", (64, 64), (240, 230, 220))), 0.7) == 1.0


def _striped(side: int = 96, period: int = 2) -> np.ndarray:
    """A grey square with fine stripes on a flat field: lots of fine detail."""
    grey = np.full((side, side), BACKGROUND_GREY, np.float32)
    grey[20:76, 20:76] = 120.0
    grey[20:76, 20:76:period] = 60.0
    return grey


def test_view_detail_matches_the_training_pipelines_measure():
    import tensorflow as tf

    from bloodcell.cellview import view_detail
    from bloodcell.pipeline import image_detail

    rng = np.random.default_rng(0)
    for grey in (_striped(), _striped(period=5), rng.uniform(0, 255, (64, 64)).astype(np.float32)):
        rgb = np.repeat(grey[None, ..., None], 3, axis=-1)
        assert view_detail(grey) == pytest.approx(float(image_detail(tf.constant(rgb))[0]), rel=1e-3)


def test_cap_detail_blurs_sharp_views_down_to_the_ceiling_and_leaves_soft_ones():
    from scipy import ndimage

    from bloodcell.cellview import DETAIL_CEILING, cap_detail, view_detail

    sharp = _striped()
    assert view_detail(sharp) > 3 * DETAIL_CEILING
    capped = cap_detail(sharp)
    assert DETAIL_CEILING * 0.9 < view_detail(capped) <= DETAIL_CEILING
    soft = ndimage.gaussian_filter(sharp, 3.0)
    assert view_detail(soft) < DETAIL_CEILING
    np.testing.assert_array_equal(cap_detail(soft), soft)


def test_grey_view_is_the_cell_view_in_grey_with_capped_detail():
    from bloodcell.cellview import DETAIL_CEILING, GREY_WEIGHTS, grey_cell_view_and_mask, view_detail
    from bloodcell.imaging import GREY_CELL_VIEW

    image, _ = draw_field("peach", seed=4)
    colour, inside = cell_view_and_mask(image, 96)
    grey, grey_inside = grey_cell_view_and_mask(image, 96)
    assert grey.shape == (96, 96, 3) and grey.dtype == np.float32
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    np.testing.assert_array_equal(inside, grey_inside)
    assert view_detail(grey[..., 0]) <= DETAIL_CEILING
    # Only softened, never shifted: the mean grey level of the cell is kept.
    assert abs(grey[..., 0][inside].mean() - (colour @ GREY_WEIGHTS)[inside].mean()) < 2
    np.testing.assert_array_equal(to_model_input(image, 96, GREY_CELL_VIEW), grey)


def test_grey_view_is_made_from_the_cell_view_alone():
    """What lets a grey-view model share a cell-view model's input (bloodcell.pairing)."""
    from bloodcell.cellview import grey_of_cell_views
    from bloodcell.imaging import GREY_CELL_VIEW

    images = [draw_field(lab, seed=seed)[0] for lab, seed in (("peach", 5), ("blue-white", 6))]
    colour = np.stack([to_model_input(image, 96, CELL_VIEW) for image in images])
    grey = np.stack([to_model_input(image, 96, GREY_CELL_VIEW) for image in images])
    np.testing.assert_array_equal(grey_of_cell_views(colour), grey)
    np.testing.assert_array_equal(grey_of_cell_views(colour[1]), grey[1])
    # A flip commutes with it, so the four mirror views of either input agree.
    np.testing.assert_allclose(grey_of_cell_views(colour[:, ::-1]), grey[:, ::-1], atol=1e-3)


@pytest.mark.parametrize("view_name", ["grey_cell_view", "nucleus_view"])
def test_grey_views_hide_the_stain_that_reinhard_transfer_leaves(view_name):
    """Two stains of one drawn cell differ less in the grey and nucleus views than in the colour view."""
    import bloodcell.cellview

    view = getattr(bloodcell.cellview, view_name)
    peach, _ = draw_field("peach", seed=7)
    blue, _ = draw_field("blue-white", seed=7)
    colour = np.abs(cell_view(peach, 96) - cell_view(blue, 96)).mean()
    grey = np.abs(view(peach, 96) - view(blue, 96)).mean()
    assert grey < colour, (grey, colour)


def test_filled_view_shows_a_cell_the_same_at_either_labs_magnification():
    """The filled view cancels a magnification change that the cell view keeps."""
    from drawn_fields import photographed_smaller

    from bloodcell.cellview import view_and_mask
    from bloodcell.imaging import FILL_CELL_VIEW

    image, _ = draw_field("peach", seed=4)
    smaller = photographed_smaller(image, 0.7, "peach")
    cell_near, cell_far = (view_and_mask(i, 96, CELL_VIEW)[0] for i in (image, smaller))
    (fill_near, inside_near), (fill_far, inside_far) = (view_and_mask(i, 96, FILL_CELL_VIEW) for i in (image, smaller))
    # The cell fills the filled view at both magnifications (12% margin each side).
    for inside in (inside_near, inside_far):
        rows = np.flatnonzero(inside.any(axis=1))
        assert 0.72 < (rows[-1] - rows[0] + 1) / 96 < 0.86
    cell_inside_far = view_and_mask(smaller, 96, CELL_VIEW)[1]
    assert cell_inside_far.mean() < 0.7 * inside_far.mean()  # the cell view keeps it small
    filled = np.abs(fill_near - fill_far).mean()
    cell = np.abs(cell_near - cell_far).mean()
    assert filled < cell / 3, (filled, cell)
    np.testing.assert_array_equal(to_model_input(smaller, 96, FILL_CELL_VIEW), fill_far)


def test_view_zoom_is_one_in_the_filled_view():
    from bloodcell.cellview import FILL_MIN_BOX_FRACTION, view_zoom

    for diameter in (110, 160, 220):
        for zoom in (0.76, 1.3):
            assert view_zoom(_disc_mask(diameter), zoom, FILL_MIN_BOX_FRACTION) == pytest.approx(1.0)


def test_view_box_is_the_crop_each_view_takes():
    from bloodcell.cellview import view_box
    from bloodcell.imaging import FILL_CELL_VIEW, GREY_CELL_VIEW

    small = _disc_mask(110)
    assert view_box(small, CELL_VIEW) == view_box(small, GREY_CELL_VIEW) == small.box()
    left, top, right, bottom = view_box(small, FILL_CELL_VIEW)
    assert right - left == pytest.approx(110 * 1.24, abs=2) and bottom - top == right - left
    with pytest.raises(ValueError, match="not a cell view"):
        view_box(small, "full")


def test_view_and_mask_refuses_the_whole_image_view():
    from bloodcell.cellview import view_and_mask

    image, _ = draw_field("peach", seed=1)
    with pytest.raises(ValueError, match="not a cell view"):
        view_and_mask(image, 48, "full")


def _textured_views(side: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """One textured cell on the flat grey field, as a sharp scan and a soft one would show it."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[:side, :side]
    inside = (rows - side / 2) ** 2 + (cols - side / 2) ** 2 < (side / 3) ** 2
    texture = ndimage.gaussian_filter(rng.uniform(0, 255, (side, side)), 1.5)
    grey = np.where(inside, 70 + 0.6 * texture, BACKGROUND_GREY).astype(np.float32)
    sharp = np.repeat(grey[..., None], 3, axis=-1) * np.array([1.0, 0.8, 1.1], np.float32)
    soft = ndimage.gaussian_filter(sharp, (1.2, 1.2, 0))
    return np.clip(sharp, 0, 255), np.clip(soft, 0, 255)


def test_focus_to_shows_a_sharp_and_a_soft_scan_of_one_cell_at_one_detail_level():
    from bloodcell.cellview import GREY_WEIGHTS, LAB_VIEW_DETAIL, focus_to, view_detail

    sharp, soft = _textured_views()
    detail = lambda view: view_detail(view @ GREY_WEIGHTS)  # noqa: E731
    # About the two labs' levels (12.5 and 5.7): a sharp and a soft scanner.
    gap = detail(sharp) - detail(soft)
    assert gap > 8
    for level in LAB_VIEW_DETAIL.values():
        focused = focus_to(np.stack([sharp, soft]), level)
        assert focused.shape == (2, 96, 96, 3) and focused.dtype == np.float32
        for view in focused:
            assert detail(view) == pytest.approx(level, rel=0.15)
        # The blend is linear in its weight and detail is not, so it lands
        # near the level, not on it; the scanners' gap all but goes.
        assert abs(detail(focused[0]) - detail(focused[1])) < gap / 8
        # Deterministic: test time shows a photo the same way every time.
        np.testing.assert_array_equal(focus_to(sharp[None], level)[0], focused[0])


def test_focus_to_is_the_training_focus_at_a_fixed_level():
    """The numpy twin of bloodcell.pipeline.focus_blend, with its blur at FOCUS_SOFT_SIGMA."""
    import tensorflow as tf

    from bloodcell.cellview import FOCUS_SOFT_SIGMA, focus_to
    from bloodcell.pipeline import focus_blend

    views = np.stack(_textured_views())
    for level in (5.7, 12.5, 30.0):
        trained = focus_blend(tf.constant(views), tf.constant([level, level]), tf.constant(FOCUS_SOFT_SIGMA))
        np.testing.assert_allclose(focus_to(views, level), trained.numpy(), atol=0.05)


def test_focus_to_leaves_a_flat_view_flat():
    from bloodcell.cellview import focus_to

    flat = np.full((1, 32, 32, 3), BACKGROUND_GREY, np.float32)
    np.testing.assert_array_equal(focus_to(flat, 12.5), flat)


def test_nucleus_view_keeps_the_nucleus_and_paints_the_cytoplasm_flat():
    from bloodcell.cellmask import find_cell
    from bloodcell.cellview import (GREY_WEIGHTS, NUCLEUS_VIEW_CYTOPLASM, crop_mask, grey_cell_view,
                                    nucleus_view)

    drawn, _ = draw_field("peach", seed=4)
    # Granules: a texture in the cytoplasm (and everywhere) for the view to remove.
    grain = np.random.default_rng(0).normal(0, 10, (drawn.height, drawn.width, 1))
    image = Image.fromarray(np.clip(np.asarray(drawn, np.float32) + grain, 0, 255).astype(np.uint8))
    mask = find_cell(image)
    view = nucleus_view(image, 96, mask)
    assert view.shape == (96, 96, 3) and view.dtype == np.float32
    np.testing.assert_array_equal(view[..., 0], view[..., 2])
    nucleus = crop_mask(mask, mask.box(), 96, part=mask.parts()[0])
    cytoplasm = crop_mask(mask, mask.box(), 96) & ~nucleus
    # Away from the borders (which the detail cap may soften), the cytoplasm
    # is one level and the nucleus keeps the grey view's levels.
    from scipy import ndimage

    inner_cytoplasm = ndimage.binary_erosion(cytoplasm, iterations=3)
    inner_nucleus = ndimage.binary_erosion(nucleus, iterations=3)
    assert inner_cytoplasm.sum() > 50 and inner_nucleus.sum() > 50
    off_level = np.abs(view[..., 0][inner_cytoplasm] - NUCLEUS_VIEW_CYTOPLASM)
    assert np.median(off_level) < 1 and off_level.max() < 8
    grey = grey_cell_view(image, 96, mask)[..., 0]
    assert abs(view[..., 0][inner_nucleus].mean() - grey[inner_nucleus].mean()) < 5
    # The cytoplasm's texture is gone: it varied in the colour view.
    colour = cell_view(image, 96, mask) @ GREY_WEIGHTS
    assert colour[inner_cytoplasm].std() > 3 * view[..., 0][inner_cytoplasm].std()


def test_nucleus_view_without_a_cell_is_the_grey_view():
    from bloodcell.cellview import grey_cell_view, nucleus_view

    blank = Image.new("RGB", (120, 100), (240, 230, 220))
    np.testing.assert_array_equal(nucleus_view(blank, 48), grey_cell_view(blank, 48))
