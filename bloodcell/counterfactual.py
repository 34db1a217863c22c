"""Counterfactual images: the same cell as the other lab would have shown it.

If a model reads the lab instead of the cell, its answer changes when only
the lab's signature changes. So each test image is rebuilt with the other
lab's look and nothing else: its white cell re-stained to the other lab's
average cell colours (Reinhard transfer in LAB), shown at the other lab's
magnification (scaled by the ratio of the two labs' typical red-cell size in
the frame: red cells are the same size in every smear) and sharpness
(blurred or sharpened by the ratio of the two labs' typical fine detail),
and everything outside the cell mask replaced by a
field from one of the other lab's training images (whose own white cell is
painted over with its background colour). A model that looks at the cell
keeps its answer.

The audit builds these twins to test a model; the twins recipe
(bloodcell.pipeline.make_dataset's `twin_share`) trains on them, with the
same looks (lab_looks), so that nothing in the two labs' looks is worth
learning (its twins take the magnification by the white cells' ratio, as
celltwin was trained, before red cells were measured).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bloodcell.cellmask import CellMask, background_colour, find_cell
from bloodcell.config import CLASS_NAMES, SOURCE_LAB, other_lab
from bloodcell.data import SplitManifest
from bloodcell.imaging import read_image
from bloodcell.redcells import red_cell_diameters
from bloodcell.stain import StainStats, average_stats, stain_stats, transfer_stain, transfer_stain_parts


@dataclass
class LabLook:
    """One lab's signature: its cells' average stain and a few empty fields."""

    cell_stain: StainStats
    backgrounds: list[np.ndarray]  # RGB uint8 fields with the white cell removed
    cell_size: float = 0.5  # median of the cell's longer side over the image's shorter side
    detail: float | None = None  # median cell_detail of its cells; None: not measured
    # median diameter of its isolated red cells over the image's shorter side
    # (bloodcell.redcells); None: no red cell measured
    red_cell_size: float | None = None
    # its cells' average nucleus and cytoplasm stains, for twins re-stained by
    # parts (as_other_lab's stain_parts); None: not measured
    nucleus_stain: StainStats | None = None
    cytoplasm_stain: StainStats | None = None


# Training images per lab used to measure its look (stain, empty fields, cell
# size and detail), drawn with this seed.
LOOK_IMAGES = 40
LOOK_SEED = 7
# The parts of a lab's look the counterfactual swaps, each also swapped on its own.
COUNTERFACTUAL_PARTS = ("stain", "field", "magnification", "sharpness")
# What the other lab's magnification is measured by. Red cells are the same
# size everywhere, so their ratio is the scanners' (0.81, Barcelona over
# Munich); the white cells' ratio (0.76) also carries the two labs' different
# classes. The audit uses red cells; celltwin was trained on twins zoomed by
# white cells (bloodcell.pipeline), and keeps that.
BY_RED_CELLS = "red cells"
BY_WHITE_CELLS = "white cells"
MAGNIFICATION_RULERS = (BY_RED_CELLS, BY_WHITE_CELLS)

# cell_detail ignores a rim this many pixels wide inside the mask: the cell's
# outline against the background is an edge, not detail.
DETAIL_RIM = 3
# The unsharp mask's blur, and the search ranges for match_detail: a Gaussian
# blur of up to SOFTEST_BLUR pixels, an unsharp amount of up to SHARPEST.
UNSHARP_SIGMA = 1.0
SOFTEST_BLUR = 4.0
SHARPEST = 8.0
DETAIL_SEARCH_STEPS = 14
# A nucleus or cytoplasm smaller than this many pixels has no statistics
# worth transferring; such a cell is re-stained whole.
MIN_PART_PIXELS = 50


def cell_detail(pixels: np.ndarray, mask: np.ndarray) -> float:
    """Fine detail inside the cell: mean absolute Laplacian of the grey level.

    Medians over the audit's 40 training images per lab: 3.5 for Munich and
    11.2 for Barcelona; the Munich scans are much softer.
    """
    return _mean_detail(pixels, _detail_pixels(mask))


def _detail_pixels(mask: np.ndarray) -> np.ndarray:
    """Where cell_detail measures: the mask without its rim (the whole mask if nothing is left)."""
    inside = ndimage.binary_erosion(mask, iterations=DETAIL_RIM)
    return inside if inside.any() else np.asarray(mask, bool)


def _mean_detail(pixels: np.ndarray, inside: np.ndarray) -> float:
    grey = np.asarray(pixels, np.float32)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(np.abs(ndimage.laplace(grey))[inside].mean()) if inside.any() else 0.0


def refocus(pixels: np.ndarray, strength: float) -> np.ndarray:
    """Negative `strength`: Gaussian blur of that many pixels; positive: unsharp mask of that amount."""
    pixels = np.asarray(pixels, np.float32)
    if strength < 0:
        return ndimage.gaussian_filter(pixels, (-strength, -strength, 0))
    if strength > 0:
        return _unsharp(pixels, ndimage.gaussian_filter(pixels, (UNSHARP_SIGMA, UNSHARP_SIGMA, 0)), strength)
    return pixels


def _unsharp(pixels: np.ndarray, soft: np.ndarray, strength: float) -> np.ndarray:
    return np.clip(pixels + strength * (pixels - soft), 0, 255)


# match_detail's search measures only inside the cell, so it works on the
# cell's box plus this margin: the reach of the widest blur (scipy's Gaussian
# stops at 4 sigma) and of the Laplacian. Every pixel it measures then sees
# the same neighbours as in the whole photo, and the search gives the same
# strength as on the whole photo, several times faster.
_SEARCH_MARGIN = int(4.0 * SOFTEST_BLUR + 0.5) + 2


def _search_region(pixels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cell's box with _SEARCH_MARGIN around it, and where cell_detail measures in it."""
    rows, cols = np.nonzero(mask)
    if not rows.size:
        return pixels, _detail_pixels(mask)
    box = (slice(max(int(rows.min()) - _SEARCH_MARGIN, 0), int(rows.max()) + _SEARCH_MARGIN + 1),
           slice(max(int(cols.min()) - _SEARCH_MARGIN, 0), int(cols.max()) + _SEARCH_MARGIN + 1))
    return pixels[box], _detail_pixels(mask[box])


def match_detail(pixels: np.ndarray, mask: np.ndarray, target: float) -> np.ndarray:
    """`pixels` blurred or sharpened so that cell_detail inside `mask` is about `target`."""
    pixels = np.asarray(pixels, np.float32)
    crop, inside = _search_region(pixels, np.asarray(mask, bool))
    if _mean_detail(crop, inside) > target:
        low, high = -SOFTEST_BLUR, 0.0

        def detail_at(strength: float) -> float:
            return _mean_detail(refocus(crop, strength), inside)
    else:
        low, high = 0.0, SHARPEST
        soft = ndimage.gaussian_filter(crop, (UNSHARP_SIGMA, UNSHARP_SIGMA, 0))  # one blur serves every try

        def detail_at(strength: float) -> float:
            return _mean_detail(_unsharp(crop, soft, strength), inside)
    for _ in range(DETAIL_SEARCH_STEPS):  # detail rises with strength: bisect
        middle = (low + high) / 2
        if detail_at(middle) > target:
            high = middle
        else:
            low = middle
    return refocus(pixels, (low + high) / 2)


def empty_field(image: Image.Image, mask: CellMask | None = None) -> np.ndarray:
    """`image` with its white cell painted over in the field's background colour.

    The colour is the one the cell mask itself calls background (the median
    of the photo's border, bloodcell.cellmask.background_colour), so the
    patch reads as plasma. The median of a ring around the old cell, used
    before, is mostly red cells in a crowded field: it left a flat purple or
    pink disc that a twin's cell sat on and the mask took for cytoplasm.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    mask = mask or find_cell(image)
    if not mask.found:
        return pixels.astype(np.uint8)
    # A generous margin, so no purple rim of the old cell survives.
    cover = ndimage.binary_dilation(mask.cell, iterations=max(2, pixels.shape[0] // 40))
    pixels[cover] = background_colour(pixels, cover)
    return pixels.astype(np.uint8)


def lab_look(images: list[Image.Image], fields: int = 8) -> LabLook:
    """Measure a lab's look from some of its training images."""
    masks = [find_cell(image) for image in images]
    stains = [stain_stats(np.asarray(im.convert("RGB")), m.cell) for im, m in zip(images, masks) if m.found]
    backgrounds = [empty_field(im, m) for im, m in list(zip(images, masks))[:fields]]
    sizes = [_cell_size(m) for m in masks if m.found]
    details = [cell_detail(np.asarray(im.convert("RGB")), m.cell) for im, m in zip(images, masks) if m.found]
    red_cells = [d for im, m in zip(images, masks) for d in red_cell_diameters(im, m)]
    parts = []  # (nucleus, cytoplasm) stain of each cell that has both
    for image, mask in zip(images, masks):
        nucleus, cytoplasm = mask.parts()
        if mask.found and _both_parts(nucleus, cytoplasm):
            pixels = np.asarray(image.convert("RGB"))
            parts.append((stain_stats(pixels, nucleus), stain_stats(pixels, cytoplasm)))
    return LabLook(average_stats(stains), backgrounds, float(np.median(sizes)) if sizes else 0.5,
                   float(np.median(details)) if details else None,
                   float(np.median(red_cells)) if red_cells else None,
                   average_stats([n for n, _ in parts]) if parts else None,
                   average_stats([c for _, c in parts]) if parts else None)


def _both_parts(nucleus: np.ndarray, cytoplasm: np.ndarray) -> bool:
    return nucleus.sum() >= MIN_PART_PIXELS and cytoplasm.sum() >= MIN_PART_PIXELS


def _cell_size(mask: CellMask) -> float:
    return mask.cell_side() / min(mask.cell.shape)


def zoom_about(image: Image.Image, zoom: float, centre: tuple[float, float]) -> Image.Image:
    """`image` scaled by `zoom` about `centre`, same size; outside the source is 0."""
    cx, cy = centre
    inverse = (1 / zoom, 0, cx - cx / zoom, 0, 1 / zoom, cy - cy / zoom)
    return image.transform(image.size, Image.Transform.AFFINE, inverse, resample=Image.Resampling.BILINEAR)


def as_other_lab(image: Image.Image, look: LabLook, field_index: int = 0,
                 mask: CellMask | None = None, zoom: float = 1.0,
                 detail_ratio: float | None = None, stain_parts: bool = False) -> Image.Image:
    """`image`'s cell re-stained like `look`'s lab, scaled by `zoom`, on one of that lab's fields.

    With `detail_ratio`, the cell is also blurred or sharpened until its fine
    detail (cell_detail) is that multiple of its own. With `stain_parts`,
    nucleus and cytoplasm are re-stained each to the look's own statistics
    for it (bloodcell.stain.transfer_stain_parts), where the look has them
    and the cell has both parts; otherwise the whole cell at once.
    """
    rgb = image.convert("RGB")
    mask = mask or find_cell(rgb)
    pixels = np.asarray(rgb, dtype=np.float32)
    nucleus, cytoplasm = mask.parts()
    if (stain_parts and mask.found and look.nucleus_stain and look.cytoplasm_stain
            and _both_parts(nucleus, cytoplasm)):
        restained = transfer_stain_parts(pixels, nucleus, cytoplasm, look.nucleus_stain, look.cytoplasm_stain)
    else:
        restained = transfer_stain(pixels, look.cell_stain, mask=mask.cell if mask.found else None)
    field = look.backgrounds[field_index % len(look.backgrounds)]
    field = np.asarray(Image.fromarray(field).resize(rgb.size, Image.Resampling.BILINEAR), np.float32)
    if not mask.found:
        return Image.fromarray(restained.astype(np.uint8))
    # A soft edge of about two pixels keeps the seam from being a cue of its own.
    alpha = ndimage.gaussian_filter(mask.cell.astype(np.float32), 1.5)
    target_detail = None if detail_ratio is None else cell_detail(pixels, mask.cell) * detail_ratio
    if zoom != 1.0:
        rows, cols = np.nonzero(mask.cell)
        centre = (float(cols.mean()) + 0.5, float(rows.mean()) + 0.5)
        alpha = np.asarray(zoom_about(Image.fromarray(alpha, mode="F"), zoom, centre))
        restained = np.asarray(zoom_about(Image.fromarray(restained.astype(np.uint8)), zoom, centre), np.float32)
    alpha = np.clip(alpha, 0.0, 1.0)
    if target_detail is not None:
        restained = match_detail(restained, alpha > 0.5, target_detail)
    alpha = alpha[..., None]
    combined = alpha * restained + (1 - alpha) * field
    return Image.fromarray(np.clip(combined + 0.5, 0, 255).astype(np.uint8))


def lab_looks(manifest: SplitManifest, data_dir: Path, seed: int = LOOK_SEED) -> dict[str, LabLook]:
    """Each lab's look, measured on a fixed sample of its training images.

    The sample depends on the split and `seed` only, so the audit and the
    twins recipe (bloodcell.pipeline) swap in the same looks.
    """
    rng = np.random.default_rng(seed)
    looks = {}
    train = manifest.paths("train")
    for lab in sorted(set(SOURCE_LAB.values())):
        paths = [p for p, label in train if SOURCE_LAB[label] == lab]
        chosen = rng.choice(len(paths), min(LOOK_IMAGES, len(paths)), replace=False)
        looks[lab] = lab_look([read_image(data_dir / paths[i]) for i in chosen])
    return looks


def magnification_ruler(looks: dict[str, LabLook], ruler: str = BY_RED_CELLS) -> str:
    """`ruler` if every look measured it; white cells (always measured) otherwise."""
    if ruler not in MAGNIFICATION_RULERS:
        raise ValueError(f"unknown magnification ruler {ruler!r} (expected one of {MAGNIFICATION_RULERS})")
    if ruler == BY_RED_CELLS and all(look.red_cell_size for look in looks.values()):
        return BY_RED_CELLS
    return BY_WHITE_CELLS


def lab_zoom(own: LabLook, other: LabLook, ruler: str = BY_RED_CELLS) -> float:
    """The factor that takes a cell from `own` lab's magnification to `other`'s, measured by `ruler`."""
    if magnification_ruler({"own": own, "other": other}, ruler) == BY_RED_CELLS:
        return other.red_cell_size / own.red_cell_size
    return other.cell_size / own.cell_size


def counterfactual_of(image: Image.Image, label: str, looks: dict[str, LabLook], field_index: int,
                      mask: CellMask | None = None, part: str | None = None,
                      ruler: str = BY_RED_CELLS, stain_parts: bool = False) -> Image.Image:
    """The counterfactual twin of an image of class `label`: its cell as the other lab shows it.

    With `part` (one of COUNTERFACTUAL_PARTS) only that part of the other
    lab's look is taken; the rest stays the image's own lab's, so each cue's
    share of the drop can be told apart. `ruler` says what the magnification
    is measured by (MAGNIFICATION_RULERS; see magnification_ruler).
    `stain_parts` re-stains nucleus and cytoplasm each on its own
    (as_other_lab); the audit re-stains the whole cell.
    """
    other, own = looks[other_lab(label)], looks[SOURCE_LAB[label]]
    detail_ratio = other.detail / own.detail if other.detail and own.detail else None
    zoom = lab_zoom(own, other, ruler)
    if part is None:
        return as_other_lab(image, other, field_index, mask, zoom=zoom, detail_ratio=detail_ratio,
                            stain_parts=stain_parts)
    if part == "stain":
        return as_other_lab(image, replace(own, cell_stain=other.cell_stain, nucleus_stain=other.nucleus_stain,
                                           cytoplasm_stain=other.cytoplasm_stain),
                            field_index, mask, stain_parts=stain_parts)
    if part == "field":
        return as_other_lab(image, replace(own, backgrounds=other.backgrounds), field_index, mask)
    if part == "magnification":
        return as_other_lab(image, own, field_index, mask, zoom=zoom)
    if part == "sharpness":
        return as_other_lab(image, own, field_index, mask, detail_ratio=detail_ratio)
    raise ValueError(f"unknown counterfactual part {part!r} (expected one of {COUNTERFACTUAL_PARTS})")


def round_trip_of(twin: Image.Image, label: str, looks: dict[str, LabLook], field_index: int) -> Image.Image:
    """A twin of an image of class `label` rendered back into that image's own lab's look.

    The result shows the cell in its own lab's look, as the photo does, but
    carries what rendering leaves behind (resampling, blur or sharpening, a
    new field), as a twin does: trained on both, a model cannot take the
    rendering for a sign of the other lab's classes.
    """
    back_label = next(name for name in CLASS_NAMES if SOURCE_LAB[name] == other_lab(label))
    return counterfactual_of(twin, back_label, looks, field_index, ruler=BY_WHITE_CELLS)


def learns_from_twins(recipe: dict) -> bool:
    """Whether a training recipe (a card's hyperparameters) shows the model counterfactual twins:
    in place of some views (`twin_share`), or beside each view (`twin_consistency`)."""
    return bool(recipe.get("twin_share") or recipe.get("twin_consistency"))
