"""The cell view: what a cell-focused model sees instead of the whole field.

Three steps take away what tells the two labs apart but says nothing about
the cell type:

1. crop a square around the white cell, so the cell fills the frame
   whatever the magnification or where it sits in the photo;
2. normalise the stain: move the cell's LAB colour statistics onto one
   reference stain (Reinhard transfer), so peach and blue-white fields give
   the same colours;
3. neutralise the background: everything outside the cell mask becomes one
   flat grey, so red cells, plasma and vignetting carry no lab signature.

What is left is the cell's shape, its nucleus and its texture.

The crop box of the cell view never drops below 0.6 of the photo's shorter
side, so a small cell stays small in its view. But the two labs photograph at
different magnifications, so a cell's size in its view also says which lab
took it. The filled cell view (`FILL_CELL_VIEW`) lets the crop follow the
cell alone: every cell fills its view, and a magnification change no longer
changes the cell's size there (only how many pixels of the photo cross it).

The grey cell view (`grey_cell_view`) goes one step further for a model that
must not use colour or fine texture at all: the same view in grey levels,
with its fine detail capped at the softer (Munich) lab's typical level, so
that neither the colours of nucleus against cytoplasm nor the sharper
Barcelona scanner can say which lab a cell came from.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from bloodcell.cellmask import MIN_BOX_FRACTION, CellMask, crop_side, find_cell
from bloodcell.imaging import CELL_VIEW, FILL_CELL_VIEW, GREY_CELL_VIEW
from bloodcell.stain import StainStats, average_stats, stain_stats, transfer_stain

# The reference stain: the mean LAB statistics of the white cells (mask
# pixels) of 60 training images per class, the two labs averaged
# (measured with `reference_stain` below and fixed here so that every code
# path uses the same numbers).
REFERENCE_STAIN = StainStats(mean=(51.0, 34.0, -33.0), std=(22.0, 18.0, 24.0))
# Light neutral grey: the colour of an empty, evenly lit slide.
BACKGROUND_GREY = 225.0
# The grey cell view's most fine detail (view_detail): the Munich scans'
# median on the cell view (5.7 over 64 training images; the Barcelona ones
# 12.5). Below it both labs have detail; above it only Barcelona does, so a
# model could only learn "sharp means Barcelona" from it.
DETAIL_CEILING = 6.0
# The filled view's crop box is at least this fraction of the photo's shorter
# side: a guard against a mis-found speck being blown up, below every real
# cell (the smallest training cells, erythroblasts, measure about 0.28 of the
# side with 12% margin each side: 0.35).
FILL_MIN_BOX_FRACTION = 0.25
# Each cell view's smallest crop box, as a fraction of the photo's shorter side.
VIEW_MIN_BOX_FRACTION = {CELL_VIEW: MIN_BOX_FRACTION, GREY_CELL_VIEW: MIN_BOX_FRACTION,
                         FILL_CELL_VIEW: FILL_MIN_BOX_FRACTION}
# The nucleus view's flat cytoplasm: a typical cytoplasm's grey level on the
# cell view (class medians 165-220 over 34 validation cells; the nuclei's
# 40-90), below the background's BACKGROUND_GREY.
NUCLEUS_VIEW_CYTOPLASM = 170.0
GREY_WEIGHTS = np.array([0.2989, 0.587, 0.114], np.float32)  # tf.image.rgb_to_grayscale's
_LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
_CAP_STEPS = 12
_CAP_MAX_BLUR = 4.0
# The labs' median fine detail on the cell view (view_detail over 64 training
# images each): the Munich scans are about half as sharp as the Barcelona ones.
LAB_VIEW_DETAIL = {"Munich AML": 5.7, "PBC Barcelona": 12.5}
# focus_to's blurred copy: the middle of the random focus' sigma range (1.0-1.6,
# bloodcell.pipeline.random_focus), whose blend it repeats without the chance.
FOCUS_SOFT_SIGMA = 1.3
_FOCUS_RADIUS = 3
_FOCUS_MAX_SHARPEN = 6.0


def cell_view(image: Image.Image, size: int, mask: CellMask | None = None) -> np.ndarray:
    """The stain-normalised, background-free square around the cell, float32 0..255."""
    return cell_view_and_mask(image, size, mask)[0]


def view_and_mask(image: Image.Image, size: int, view: str,
                  mask: CellMask | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cell view `view` (one of bloodcell.imaging.CELL_VIEWS) and the cell mask in its frame."""
    min_fraction = _min_box_fraction(view)
    if view == GREY_CELL_VIEW:
        return grey_cell_view_and_mask(image, size, mask)
    return cell_view_and_mask(image, size, mask, min_fraction)


def view_box(mask: CellMask, view: str) -> tuple[int, int, int, int]:
    """The crop box (left, top, right, bottom) that cell view `view` takes from the photo."""
    return mask.box(min_fraction=_min_box_fraction(view))


def _min_box_fraction(view: str) -> float:
    if view not in VIEW_MIN_BOX_FRACTION:
        raise ValueError(f"{view!r} is not a cell view (expected one of {tuple(VIEW_MIN_BOX_FRACTION)})")
    return VIEW_MIN_BOX_FRACTION[view]


def cell_view_and_mask(image: Image.Image, size: int, mask: CellMask | None = None,
                       min_box_fraction: float = MIN_BOX_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """The cell view and the cell mask in the view's frame (bool, size x size).

    `min_box_fraction`: the crop box's smallest side as a fraction of the
    photo's shorter side (FILL_MIN_BOX_FRACTION for the filled view).
    """
    mask = mask or find_cell(image)
    box = mask.box(min_fraction=min_box_fraction)
    crop = image.convert("RGB").crop(box).resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(crop, dtype=np.uint8)
    inside = crop_mask(mask, box, size)
    if not mask.found:
        # Nothing cell-like: keep the pixels (stain-normalised over the whole
        # crop) so the model and the out-of-distribution check can still look.
        return transfer_stain(pixels, REFERENCE_STAIN), inside
    normalised = np.full((size, size, 3), BACKGROUND_GREY, np.float32)
    if inside.any():
        # Only the cell's pixels are moved: the rest becomes grey anyway.
        normalised[inside] = transfer_stain(pixels[inside], REFERENCE_STAIN)
    return normalised, inside


def view_detail(grey: np.ndarray) -> float:
    """Fine detail of a view's grey levels: mean absolute Laplacian where the grey level varies.

    The numpy twin of bloodcell.pipeline.image_detail (same kernel, same
    'varies' rule, border excluded), for one 2-D grey image 0..255.
    """
    grey = np.asarray(grey, np.float32)
    laplacian = np.abs(ndimage.convolve(grey, _LAPLACIAN))[1:-1, 1:-1]
    spread = (ndimage.maximum_filter(grey, 3) - ndimage.minimum_filter(grey, 3))[1:-1, 1:-1]
    varies = spread > 0.5
    return float(laplacian[varies].sum() / max(int(varies.sum()), 1))


def cap_detail(grey: np.ndarray, ceiling: float = DETAIL_CEILING) -> np.ndarray:
    """`grey` blurred just enough that its view_detail is at most `ceiling`; softer views untouched.

    A view that even the strongest blur tried (sigma _CAP_MAX_BLUR) leaves
    above the ceiling, such as pure noise, gets that strongest blur.
    """
    grey = np.asarray(grey, np.float32)
    if view_detail(grey) <= ceiling:
        return grey
    low, high = 0.0, _CAP_MAX_BLUR
    for _ in range(_CAP_STEPS):  # detail falls as the blur grows: bisect
        middle = (low + high) / 2
        if view_detail(ndimage.gaussian_filter(grey, middle, mode="nearest")) > ceiling:
            low = middle
        else:
            high = middle
    return ndimage.gaussian_filter(grey, high, mode="nearest")


def focus_to(views: np.ndarray, target: float) -> np.ndarray:
    """Views (N, H, W, 3) blurred or sharpened to about `target` fine detail (view_detail), float32 0..255.

    The deterministic twin of the random focus that training applies
    (bloodcell.pipeline.random_focus): each view is blended with a copy
    blurred at FOCUS_SOFT_SIGMA (softer) or pushed away from it (an unsharp
    mask, sharper), the weight interpolated from the view's detail at weights
    -1, 0 and 1 and clipped to -1..6 as in training. Views shown at one fixed
    level, whatever scanner took them, carry no sharpness of their own:
    test-time focus (bloodcell.inference.TTA_FLIPS_FOCUS) shows each view at
    both labs' levels (LAB_VIEW_DETAIL).
    """
    views = np.asarray(views, np.float32)
    soft = ndimage.gaussian_filter(views, (0, FOCUS_SOFT_SIGMA, FOCUS_SOFT_SIGMA, 0), mode="mirror",
                                   truncate=_FOCUS_RADIUS / FOCUS_SOFT_SIGMA)
    difference = views - soft
    focused = np.empty_like(views)
    for index, (view, push) in enumerate(zip(views, difference)):
        detail = view_detail(view @ GREY_WEIGHTS)
        if target < detail:
            softest = view_detail(soft[index] @ GREY_WEIGHTS)
            weight = -np.clip((detail - target) / max(detail - softest, 1e-3), 0.0, 1.0)
        else:
            sharper = view_detail((view + push) @ GREY_WEIGHTS)
            weight = np.clip((target - detail) / max(sharper - detail, 1e-3), 0.0, _FOCUS_MAX_SHARPEN)
        focused[index] = np.clip(view + weight * push, 0.0, 255.0)
    return focused


def grey_cell_view(image: Image.Image, size: int, mask: CellMask | None = None) -> np.ndarray:
    """The cell view in grey levels with its fine detail capped (three equal channels, float32 0..255)."""
    return grey_cell_view_and_mask(image, size, mask)[0]


def grey_cell_view_and_mask(image: Image.Image, size: int,
                            mask: CellMask | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The grey cell view and the cell mask in its frame."""
    view, inside = cell_view_and_mask(image, size, mask, VIEW_MIN_BOX_FRACTION[GREY_CELL_VIEW])
    return grey_of_cell_views(view), inside


def grey_of_cell_views(views: np.ndarray) -> np.ndarray:
    """Cell views, (H, W, 3) or (N, H, W, 3), as grey cell views: the same crop in grey levels,
    fine detail capped (three equal channels, float32 0..255).

    The grey view is made from the cell view by taking away only, so a model
    of either view can share one input (bloodcell.pairing).
    """
    views = np.asarray(views, np.float32)
    if views.ndim == 3:
        return grey_of_cell_views(views[None])[0]
    grey = np.stack([cap_detail(view @ GREY_WEIGHTS) for view in views])
    return np.repeat(grey[..., None], 3, axis=-1)


def crop_mask(mask: CellMask, box: tuple[int, int, int, int], size: int,
              part: np.ndarray | None = None) -> np.ndarray:
    """The cell mask (or `part`, another mask of the photo's size) inside `box`, resized to `size` x `size`."""
    left, top, right, bottom = box
    chosen = mask.cell if part is None else part
    cell = Image.fromarray(chosen[top:bottom, left:right].astype(np.uint8) * 255)
    return np.asarray(cell.resize((size, size), Image.Resampling.BILINEAR)) >= 128


def nucleus_view(image: Image.Image, size: int, mask: CellMask | None = None) -> np.ndarray:
    """The grey cell view with the cytoplasm painted one flat level (three equal channels, float32 0..255).

    What is left is the nucleus' grey levels and the cell's outline: nothing
    of the cytoplasm's colour or granules, where a healthy donor's and a
    leukaemia patient's neutrophils differ, and so can two labs' patients.
    A photo without a found cell gets the grey cell view. Measured with
    benchmarks.view_probe, and used by no model: without its cytoplasm a
    third lab's neutrophil reads as an erythroblast more often, not less.
    """
    mask = mask or find_cell(image)
    view, inside = cell_view_and_mask(image, size, mask)
    if not mask.found:
        return grey_of_cell_views(view)
    nucleus, _ = mask.parts()
    nucleus = crop_mask(mask, mask.box(), size, part=nucleus) & inside
    grey = view @ GREY_WEIGHTS
    levels = np.full(grey.shape, BACKGROUND_GREY, np.float32)
    levels[inside] = NUCLEUS_VIEW_CYTOPLASM
    levels[nucleus] = grey[nucleus]
    return np.repeat(cap_detail(levels)[..., None], 3, axis=-1)


def view_zoom(mask: CellMask, zoom: float, min_box_fraction: float = MIN_BOX_FRACTION) -> float:
    """How much larger the cell looks in its view when the photo is magnified by `zoom`.

    The crop box follows the cell's size but never drops below a fraction of
    the image, so a magnification change does not simply cancel out: a small
    cell magnified grows in its view until it fills it, a large one shrunk
    takes a smaller share of a box held at its minimum size. 1.0 when no cell
    was found, and (the point of the filled view) whenever neither box is
    held at `min_box_fraction` or clipped by the photo's edge.
    """
    if not mask.found or zoom <= 0:
        return 1.0
    height, width = mask.cell.shape
    cell = mask.cell_side()
    before = crop_side(cell, height, width, min_fraction=min_box_fraction)
    after = crop_side(zoom * cell, height, width, min_fraction=min_box_fraction)
    return float(zoom * before / after)


def reference_stain(images: list[Image.Image]) -> StainStats:
    """Mean LAB statistics of the cells in `images` (to re-derive REFERENCE_STAIN)."""
    masks = [(image, find_cell(image)) for image in images]
    average = average_stats([stain_stats(np.asarray(image.convert("RGB")), mask.cell)
                             for image, mask in masks if mask.found])
    return StainStats(tuple(float(round(v)) for v in average.mean), tuple(float(round(v)) for v in average.std))
