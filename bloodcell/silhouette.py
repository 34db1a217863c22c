"""A cell's silhouette, and measurements of its shape that carry no colour or texture.

The audit's colour-only baselines show how far colour alone goes (the lab).
The shape baseline is their opposite: it sees three flat levels (nucleus,
cytoplasm, background) from bloodcell.cellmask in the filled crop, so
neither the stain, nor the scanner's sharpness, nor the magnification is
there to learn; what is left is what a haematologist names first: a lobed
or a round nucleus, how much of the cell it takes, how thick its parts are.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from bloodcell.cellmask import CellMask, find_cell
from bloodcell.cellview import view_box
from bloodcell.imaging import FILL_CELL_VIEW

SILHOUETTE_SIZE = 64
NUCLEUS_LEVEL, CYTOPLASM_LEVEL, BACKGROUND_LEVEL = 0.0, 0.5, 1.0
# Erosions of the nucleus after which its separate parts are counted: a
# segmented neutrophil's lobes come apart where a round nucleus stays whole.
LOBE_EROSIONS = (1, 2, 3)
SHAPE_FEATURE_NAMES = (
    "nucleus share of the cell",
    "nucleus outline length squared over its area",
    "nucleus area with holes filled over its area",
    "nucleus elongation (ratio of its axes)",
    *(f"nucleus parts after {k} erosion{'s' if k > 1 else ''}" for k in LOBE_EROSIONS),
    "nucleus' thickest point over the square root of its area",
    "nucleus' mean thickness over the square root of its area",
    "cell share of the crop",
)


def silhouette(mask: CellMask, size: int = SILHOUETTE_SIZE) -> np.ndarray:
    """The cell's three levels (nucleus 0, cytoplasm 0.5, background 1) in the filled crop, size x size."""
    levels = np.full(mask.cell.shape, BACKGROUND_LEVEL, np.float32)
    levels[mask.cell] = CYTOPLASM_LEVEL
    levels[mask.nucleus & mask.cell] = NUCLEUS_LEVEL
    left, top, right, bottom = view_box(mask, FILL_CELL_VIEW)
    crop = Image.fromarray(levels[top:bottom, left:right])  # float32: mode "F"
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), np.float32)


def shape_features(levels: np.ndarray) -> np.ndarray:
    """The measurements named in SHAPE_FEATURE_NAMES, from a silhouette."""
    nucleus = levels < (NUCLEUS_LEVEL + CYTOPLASM_LEVEL) / 2
    cell = levels < (CYTOPLASM_LEVEL + BACKGROUND_LEVEL) / 2
    nucleus_area, cell_area = nucleus.sum() + 1e-6, cell.sum() + 1e-6
    outline = (nucleus ^ ndimage.binary_erosion(nucleus)).sum()
    filled = ndimage.binary_fill_holes(nucleus).sum() / nucleus_area
    rows, cols = np.nonzero(nucleus)
    elongation = 1.0
    if len(rows) > 2:
        axes = np.linalg.eigvalsh(np.cov(np.stack([rows, cols])))
        elongation = float(np.sqrt(max(axes) / max(min(axes), 1e-6)))
    parts = [ndimage.label(ndimage.binary_erosion(nucleus, iterations=k))[1] for k in LOBE_EROSIONS]
    thickness = ndimage.distance_transform_edt(nucleus)
    root_area = np.sqrt(nucleus_area)
    mean_thickness = thickness[nucleus].mean() / root_area if nucleus_area > 1 else 0.0
    return np.array([nucleus_area / cell_area, outline ** 2 / nucleus_area, filled, elongation, *parts,
                     thickness.max() / root_area, mean_thickness, cell_area / levels.size], np.float64)


def silhouette_picture(image: Image.Image, side: int = 160) -> Image.Image:
    """What the shape baseline sees of `image`, as a grey picture `side` pixels across.

    Nearest-neighbour enlargement keeps the 64-pixel silhouette's steps
    visible: this is all the baseline has to go on.
    """
    levels = silhouette(find_cell(image))
    return Image.fromarray(np.uint8(np.round(levels * 255))).resize((side, side), Image.Resampling.NEAREST)
