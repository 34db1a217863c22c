"""Reframing a photo taken at a lower magnification than the training photos.

Every training photo came from one of two scanners: its red cells span
0.17-0.29 of its shorter side (96% of them; bloodcell.redcells). A photo
through another microscope, or of a wider field, shows the white cell
smaller, and a smaller cell reads as a smaller cell type: test cells shown
at half the magnification fell from 99% to 69% right under the default model
(`benchmarks/magnification.py`). Red cells are about 7.5 micrometres across
in every smear, so they say how far the photo is from the training
magnification. When they say it is clearly lower than the training photos',
every model sees the photo cropped to a square around its white cell, the size at
which its red cells span what they span in the median training photo: the
same cell, at a magnification the models know.

Only a photo of one centred white cell is reframed: one that the cell mask
flags (several cells, none in the middle) keeps its flag. Cropping only
takes pixels away. A photo at a higher magnification than the
training photos is left as it is, since widening its field would mean
inventing what lies beyond its edges (the app and the CLI still say that its
magnification is unusual); the cell-view models hardly need it, as their
view grows with the cell (`benchmarks/magnification.py`: 95-99% of test
cells right at twice the magnification).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from bloodcell.cellmask import CellMask, find_cell
from bloodcell.redcells import red_cell_diameters

# The median over the 2,412 training photos with a lone red cell of each
# photo's median red-cell diameter, over its shorter side.
TARGET_RED_CELL_SIZE = 0.21
# Reframe only photos whose red cells measure below what small red cells at a
# training magnification can: a Barcelona photo (median 0.204) whose red cells
# are all microcytes, 5.6 micrometres instead of 7.5, measures 0.153. The
# lowest training photos with a ruler (below) measure 0.161-0.170, those of
# the validation split 0.165-0.170; a photo at two thirds of the training
# magnification measures about 0.14.
REFRAME_BELOW = 0.15
# A single blob can be a fragment or a clump of platelets: of the 19 dataset
# photos measured under 0.15 of their side, 17 had one lone red cell, all at
# one of the two training magnifications. Three agreeing red cells make a ruler.
MIN_RULER_RED_CELLS = 3
# A crop that would enlarge the photo by less than this is not worth the change.
MIN_ZOOM = 1.05


@dataclass(frozen=True)
class Framing:
    """What the models see of one photo, and how it relates to the photo as given."""

    image: Image.Image  # the photo, or the square cropped from it
    mask: CellMask  # the white cell in `image`
    red_cell_size: float | None  # the given photo's median red cell over its shorter side; None: unmeasured
    red_cells: int  # how many lone red cells measured it
    zoom: float = 1.0  # how much closer `image` shows the cell than the photo as given
    box: tuple[int, int, int, int] | None = None  # the crop (left, top, right, bottom) in the given photo

    @property
    def reframed(self) -> bool:
        return self.box is not None


def frame_photo(image: Image.Image, mask: CellMask | None = None) -> Framing:
    """`image` as the models should see it: cropped around its white cell if its magnification is too low."""
    mask = mask or find_cell(image)
    diameters = red_cell_diameters(image, mask)
    size = float(np.median(diameters)) if diameters else None  # as bloodcell.redcells.photo_red_cell_size
    unchanged = Framing(image, mask, size, len(diameters))
    # Several cells, none in the middle, no stain: such a photo keeps the flag
    # it earned, which cropping to one of its cells would hide.
    if mask.problem is not None or size is None or size >= REFRAME_BELOW or len(diameters) < MIN_RULER_RED_CELLS:
        return unchanged
    # The square whose shorter side the red cells span TARGET_RED_CELL_SIZE of,
    # around the white cell, never cutting into it (mask.box keeps its margin).
    box = mask.box(min_fraction=size / TARGET_RED_CELL_SIZE)
    left, top, right, bottom = box
    zoom = min(image.size) / min(right - left, bottom - top)
    if zoom < MIN_ZOOM:
        return unchanged
    cropped = image.crop(box)
    return Framing(cropped, find_cell(cropped), size, len(diameters), zoom, box)
