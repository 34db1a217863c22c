"""Red cells as a ruler: each lab's true magnification.

A red blood cell is about 7.5 micrometres across in every smear, so its size
in pixels tells a scanner's magnification. The white cells cannot: their
size depends on the class, and each lab photographed different classes
(small erythroblasts in Barcelona, large myeloblasts in Munich), so the
ratio of the labs' median white-cell sizes (0.76) mixes the magnification
with the classes' own sizes. The red cells give 0.81 on the counterfactual's
40 look images per lab (bloodcell.counterfactual.lab_look) and 0.82 on every
training image, the classes of a lab within 3% of each other.

Only isolated, round red cells are measured: a red cell touching another, the
white cell or the image's edge gives a blob that is not a disc.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from bloodcell.cellmask import CellMask, find_cell, otsu_threshold
from bloodcell.config import SOURCE_LAB
from bloodcell.data import SplitManifest
from bloodcell.imaging import read_image

# A red-cell candidate is a blob darker in green than the background (red
# cells absorb green; both labs' backgrounds are pale), holes filled, since
# a red cell's pale centre is part of it.
# Measured on the training split: the middle half of the lone red cells
# span 0.19-0.22 of the image's shorter side in Barcelona and 0.23-0.27 in
# Munich, so a blob under 0.1 is a platelet or debris.
MIN_DIAMETER = 0.1
# That floor is set at the training photos' magnification: in a photo taken
# at a third of it, every red cell measures under 0.1. A platelet (2-3
# micrometres) is small beside the white cell (9-20), where a red cell (7.5)
# measures 0.4-0.7 of the white cell's longer side in the median photo of
# each class. So a blob at least this share of the white cell counts too,
# whatever the magnification. It lowers the floor only where the white cell
# spans under a quarter of the photo's side: no dataset photo's measurement
# changes.
MIN_RED_TO_WHITE = 0.4
# A disc's area fills its convex hull and its second moments are equal;
# two touching red cells fail both.
MIN_SOLIDITY = 0.9
MAX_ECCENTRICITY = 0.75
# Pixels this close to the white cell's mask belong to it, not to a red cell.
WHITE_CELL_MARGIN = 5
# Fewer pixels than this make no measurable disc (a photo a few pixels wide).
MIN_DISC_PIXELS = 12
# A red cell (7.5 micrometres) is no wider than the white cell beside it: over
# 800 training photos the widest red cell measured at most 1.04 times the white
# cell's longer side (small erythroblasts), 0.4-0.7 times for the median photo
# of each class. A wider "red cell" is the subject itself, or debris.
MAX_RED_TO_WHITE = 1.25
# The training photos' magnifications: the median red-cell diameter of each
# training photo with a lone red cell (1,770 from Barcelona, median 0.204;
# 642 from Munich, median 0.249) lies within this range for 96% of them
# (2nd to 98th percentile of both labs together). A photo outside it is at a
# magnification the models rarely saw, and a cell's size in the frame is one
# of the cues that tell the labs apart.
TRAINING_RED_CELL_RANGE = (0.17, 0.29)
# Red cells are measured on a copy at most this many pixels on its shorter
# side. The training photos (360-400 pixels) are measured as they are, and
# the pixel sizes above (the margin, the opening) were chosen at their scale;
# a 4,000-pixel phone photo took a second at full size.
MEASURE_SIDE = 512


def red_cell_diameters(image: Image.Image | np.ndarray, white_cell: CellMask | None = None) -> list[float]:
    """Diameters of the image's isolated red cells, as fractions of its shorter side.

    Measured only beside a white cell: without one, a lone round blob (a
    drawn disc, a pale cell that is not stained) would pass for a red cell.
    """
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)[..., :3]
    white_cell = white_cell or find_cell(rgb)
    if not white_cell.found:
        return []
    rgb, white = _working_copy(rgb, white_cell.cell)
    green = rgb[..., 1].astype(np.float32)
    outside = ~ndimage.binary_dilation(white, iterations=WHITE_CELL_MARGIN)
    if not outside.any() or green[outside].max() - green[outside].min() < 1:
        return []  # all white cell, or a flat field: nothing to measure
    candidates = ndimage.binary_fill_holes(green < otsu_threshold(green[outside])) & outside
    candidates = ndimage.binary_opening(candidates, iterations=2)
    labels, _ = ndimage.label(candidates)
    side = min(green.shape)
    white_side = white_cell.cell_side() * side / min(white_cell.cell.shape)
    narrowest = min(MIN_DIAMETER * side, MIN_RED_TO_WHITE * white_side)
    widest = MAX_RED_TO_WHITE * white_side
    diameters = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or _touches_edge(box, green.shape):
            continue
        rows, cols = np.nonzero(labels[box] == index)
        diameter = np.sqrt(4 * rows.size / np.pi)
        if narrowest <= diameter <= widest and _is_disc(rows, cols):
            diameters.append(float(diameter / side))
    return diameters


def photo_red_cell_size(image: Image.Image | np.ndarray, white_cell: CellMask | None = None) -> float | None:
    """Median diameter of the photo's lone red cells over its shorter side; None when it has none."""
    diameters = red_cell_diameters(image, white_cell)
    return float(np.median(diameters)) if diameters else None


def magnification_note(red_cell_size: float | None, zoom: float = 1.0) -> str | None:
    """What a photo's red cells say about its magnification against the training photos'; None if unmeasured.

    `zoom` above 1: the models saw the photo cropped that much closer around
    its white cell (bloodcell.framing).
    """
    if red_cell_size is None or not np.isfinite(red_cell_size):
        return None
    low, high = TRAINING_RED_CELL_RANGE
    measured = (f"Red cells span {red_cell_size:.0%} of this photo's shorter side; "
                f"{100 * low:.0f}–{high:.0%} in the training photos (Barcelona about 20%, Munich about 25%).")
    if red_cell_size < low and zoom > 1:
        return (measured + " This photo is at a lower magnification than 98% of the training photos, so the "
                f"models saw the square around its white cell, {zoom:.1f}× closer: the cell at the size "
                "they were trained on.")
    if red_cell_size < low:
        return (measured + " This photo is at a lower magnification than 98% of the training photos: "
                "its white cell looks smaller than the models are used to, so trust the answer less.")
    if red_cell_size > high:
        return (measured + " This photo is at a higher magnification than 98% of the training photos: "
                "its white cell looks larger than the models are used to. The cell-view models, which "
                "crop around the cell, kept 95–99% of test cells right at twice the magnification; the "
                "whole-image models (mobilenetv2, cnn) fell to 82–89%.")
    return measured + " Its magnification is one the models have seen."


def _working_copy(rgb: np.ndarray, white: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`rgb` and the white cell's mask shrunk so that the shorter side is at most MEASURE_SIDE."""
    height, width = rgb.shape[:2]
    scale = MEASURE_SIDE / min(height, width)
    if scale >= 1:
        return rgb, white
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).resize(size, Image.Resampling.BILINEAR))
    mask = np.asarray(Image.fromarray(white.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
    return small, mask


def _touches_edge(box: tuple[slice, slice], shape: tuple[int, int]) -> bool:
    return box[0].start == 0 or box[1].start == 0 or box[0].stop == shape[0] or box[1].stop == shape[1]


def _is_disc(rows: np.ndarray, cols: np.ndarray) -> bool:
    if rows.size < MIN_DISC_PIXELS:
        return False
    points = np.column_stack([rows, cols]).astype(np.float64)
    spread = np.linalg.eigvalsh(np.cov(points.T))  # ascending
    eccentricity = np.sqrt(1 - spread[0] / spread[1]) if spread[1] > 0 else 1.0
    try:
        # Pixel centres: the hull misses half a pixel all round, so pad it back.
        hull = ConvexHull(points)
        hull_area = hull.volume + hull.area / 2 + np.pi / 4
    except QhullError:
        return False
    return eccentricity <= MAX_ECCENTRICITY and rows.size / hull_area >= MIN_SOLIDITY


def lab_red_cell_sizes(manifest: SplitManifest, data_dir: Path, per_lab: int | None = None,
                       seed: int = 0) -> dict[str, float]:
    """Each lab's median red-cell diameter over its training images (all, or `per_lab` drawn with `seed`)."""
    rng = np.random.default_rng(seed)
    sizes = {}
    train = manifest.paths("train")
    for lab in sorted(set(SOURCE_LAB.values())):
        paths = [p for p, label in train if SOURCE_LAB[label] == lab]
        if per_lab is not None:
            paths = [paths[i] for i in rng.choice(len(paths), min(per_lab, len(paths)), replace=False)]
        diameters = [d for p in paths for d in red_cell_diameters(read_image(data_dir / p))]
        sizes[lab] = float(np.median(diameters)) if diameters else float("nan")
    return sizes
