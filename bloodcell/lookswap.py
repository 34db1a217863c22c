"""A photo as each training lab would have shown it: does the answer follow the cell or the look?

The audit's counterfactual (bloodcell.counterfactual) shows a test cell in
the other lab's look, with fields cut from that lab's training photos. The
app can ship no training photo, and a user's photo comes from neither lab.
So each lab's look is kept as numbers measured on a fixed sample of its
training photos (the white cells' stain, the field's colours, the cells'
fine detail, the photos' size; the red cells' size is
bloodcell.config.LAB_RED_CELL_SIZE), and the user's own photo is rendered
in it: scaled about its white cell to that lab's magnification (red cells
are the ruler; without one the scale is kept), the white cell re-stained and
the rest of the field re-coloured to the lab's LAB statistics (Reinhard
transfer, each part on its own), and blurred or sharpened to the lab's fine
detail. If a model's answer changes between the two renderings, the look,
not only the cell, moved it.

What is not imitated: how the stains colour nucleus, cytoplasm and granules
against each other (Reinhard transfer moves averages), and the texture of
each lab's fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bloodcell.cellmask import CellMask, find_cell
from bloodcell.config import LAB_RED_CELL_SIZE, SOURCE_LAB
from bloodcell.counterfactual import LOOK_IMAGES, LOOK_SEED, cell_detail, match_detail
from bloodcell.data import SplitManifest, check_data_dir
from bloodcell.errors import BloodcellError
from bloodcell.framing import MIN_RULER_RED_CELLS, Framing
from bloodcell.imaging import read_image
from bloodcell.stain import StainStats, average_stats, stain_stats, transfer_stain

# Where the looks ship: beside the split they were measured on.
LOOKS_FILE = "lab_looks.json"
LOOKS_FORMAT = 1
# A photo's field is what lies this share of its shorter side beyond the
# white cell's mask: the cell's pale rim stays out of the field's statistics.
FIELD_MARGIN = 0.03
# Scaling a photo by more than this (either way) to reach a lab's
# magnification would show more invented or lost pixels than photo.
MAX_SCALE = 2.0
# The cell's outline is softened over about this many pixels, so the seam
# between re-stained cell and re-coloured field is no cue of its own.
EDGE_SIGMA = 1.5


class LooksFileError(BloodcellError):
    """The looks file is missing, unreadable or of another format."""


@dataclass(frozen=True)
class LookNumbers:
    """One lab's look, as numbers only: no pixel of a training photo."""

    lab: str
    cell_stain: StainStats  # LAB mean and spread of its white cells
    field_stain: StainStats  # LAB mean and spread of everything else in its photos
    detail: float  # median fine detail of its cells (bloodcell.counterfactual.cell_detail)
    red_cell_size: float  # median red-cell diameter over the photo's shorter side
    side: int  # median shorter side of its photos, in pixels

    def to_dict(self) -> dict:
        return {"lab": self.lab, "cell_stain": self.cell_stain.to_dict(), "field_stain": self.field_stain.to_dict(),
                "detail": self.detail, "red_cell_size": self.red_cell_size, "side": self.side}

    @classmethod
    def from_dict(cls, data: dict) -> "LookNumbers":
        return cls(str(data["lab"]), StainStats.from_dict(data["cell_stain"]),
                   StainStats.from_dict(data["field_stain"]), float(data["detail"]),
                   float(data["red_cell_size"]), int(data["side"]))


@dataclass(frozen=True)
class Rendering:
    """A photo in one lab's look, and how far it was scaled to get there."""

    lab: str
    image: Image.Image
    scale: float  # 1: magnification kept (no red cell measured, or already the lab's)
    ruler: bool  # whether red cells measured the photo's magnification


def look_column(lab: str) -> str:
    """The CSV column of the best guess in `lab`'s look (the CLI's and the app's): in_pbc_barcelona_look."""
    return "in_" + "_".join(lab.lower().split()) + "_look"


def field_mask(mask: CellMask) -> np.ndarray:
    """Pixels of the photo that are neither the white cell nor its rim."""
    return _field_of(mask.cell)


def _field_of(cell: np.ndarray) -> np.ndarray:
    margin = max(1, round(FIELD_MARGIN * min(cell.shape)))
    return ~ndimage.binary_dilation(cell, iterations=margin)


def _at_most_look_size(image: Image.Image, cell: np.ndarray, side: int) -> tuple[Image.Image, np.ndarray]:
    """A photo larger than the look's photos shrunk to their size first, with its cell mask.

    The rendering is that size anyway; shrinking with a proper filter first
    avoids aliasing, and a camera frame of many megapixels would otherwise
    cost hundreds of megabytes in floating point.
    """
    if min(image.size) <= side:
        return image, cell
    factor = side / min(image.size)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    mask = Image.fromarray(cell.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
    return image.resize(size, Image.Resampling.LANCZOS), np.asarray(mask) > 127


def measure_look(lab: str, images: list[Image.Image]) -> LookNumbers:
    """A lab's look measured on some of its photos (each with one white cell)."""
    cells, fields, details, sides = [], [], [], []
    for image in images:
        rgb = np.asarray(image.convert("RGB"))
        mask = find_cell(image)
        sides.append(min(image.size))
        if not mask.found:
            continue
        cells.append(stain_stats(rgb, mask.cell))
        fields.append(stain_stats(rgb, field_mask(mask)))
        details.append(cell_detail(rgb, mask.cell))
    if not cells:
        raise BloodcellError(f"no white cell found in the {len(images)} photos given for {lab}")
    return LookNumbers(lab, average_stats(cells), average_stats(fields), float(np.median(details)),
                       LAB_RED_CELL_SIZE[lab], int(np.median(sides)))


def measure_lab_looks(manifest: SplitManifest, data_dir: Path, seed: int = LOOK_SEED) -> dict[str, LookNumbers]:
    """Both labs' looks, on the same training photos the audit's counterfactual measures its looks on."""
    check_data_dir(Path(data_dir), require_all_classes=True)
    rng = np.random.default_rng(seed)
    train = manifest.paths("train")
    looks = {}
    for lab in sorted(set(SOURCE_LAB.values())):
        paths = [p for p, label in train if SOURCE_LAB[label] == lab]
        chosen = rng.choice(len(paths), min(LOOK_IMAGES, len(paths)), replace=False)
        looks[lab] = measure_look(lab, [read_image(data_dir / paths[i]) for i in chosen])
    return looks


def save_looks(looks: dict[str, LookNumbers], path: Path) -> Path:
    payload = {"format": LOOKS_FORMAT, "looks": [look.to_dict() for look in looks.values()]}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def load_looks(path: Path) -> dict[str, LookNumbers]:
    """The looks saved by save_looks; LooksFileError says why when they cannot be used."""
    try:
        payload = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LooksFileError(f"no lab looks at {path} (measure them with `python -m bloodcell looks`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LooksFileError(f"cannot read the lab looks at {path}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != LOOKS_FORMAT:
        raise LooksFileError(f"{path} is not a lab looks file of format {LOOKS_FORMAT}")
    try:
        looks = [LookNumbers.from_dict(item) for item in payload["looks"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise LooksFileError(f"{path} has a malformed look: {exc!r}") from None
    return {look.lab: look for look in looks}


def render_in_look(image: Image.Image, mask: CellMask, red_cell_size: float | None,
                   look: LookNumbers) -> Rendering:
    """`image` (its white cell found as `mask`) as `look`'s lab would have photographed it.

    `red_cell_size` is the photo's median red-cell diameter over its shorter
    side (bloodcell.redcells), measured on enough red cells to be a ruler
    (bloodcell.framing.MIN_RULER_RED_CELLS); None keeps the photo's
    magnification.
    """
    if not mask.found:
        raise ValueError("no white cell to render: the look swap needs a stained nucleus")
    image, cell_mask = _at_most_look_size(image.convert("RGB"), mask.cell, look.side)
    rgb = np.asarray(image, np.float32)
    cell = transfer_stain(rgb, look.cell_stain, mask=cell_mask)
    field = transfer_stain(rgb, look.field_stain, mask=_field_of(cell_mask))
    alpha = ndimage.gaussian_filter(cell_mask.astype(np.float32), EDGE_SIGMA)[..., None]
    restained = alpha * cell + (1 - alpha) * field

    scale = 1.0 if red_cell_size is None else float(np.clip(look.red_cell_size / red_cell_size,
                                                            1 / MAX_SCALE, MAX_SCALE))
    rendered, cell_mask = _rescale(restained, cell_mask, scale, look)
    rendered = match_detail(rendered, cell_mask, look.detail)
    return Rendering(look.lab, Image.fromarray(np.clip(rendered + 0.5, 0, 255).astype(np.uint8)), scale,
                     red_cell_size is not None)


def render_in_looks(framing: Framing, looks: dict[str, LookNumbers]) -> list[Rendering]:
    """The photo the models see (bloodcell.framing) in each lab's look, labs in name order.

    Red cells measure its magnification only when enough of them agree to be
    a ruler (as for reframing); `framing.image` shows them `framing.zoom`
    times larger than the photo as given.
    """
    ruler = framing.red_cell_size is not None and framing.red_cells >= MIN_RULER_RED_CELLS
    red_cell_size = framing.red_cell_size * framing.zoom if ruler else None
    return [render_in_look(framing.image, framing.mask, red_cell_size, looks[lab]) for lab in sorted(looks)]


def _rescale(pixels: np.ndarray, cell: np.ndarray, scale: float,
             look: LookNumbers) -> tuple[np.ndarray, np.ndarray]:
    """The photo magnified `scale` times about its white cell, at the lab's photo size.

    The output is `look.side` pixels on its shorter side, since fine detail is
    measured per pixel. A photo scaled down is first extended by its own
    mirror image, so the frame holds field and red cells rather than a flat
    border.
    """
    height, width = cell.shape
    pad = int(np.ceil(max(height, width) * max(0.0, 1 / scale - 1) / 2)) + 1
    pixels = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    padded_cell = np.pad(cell, pad)
    out_scale = look.side / min(height, width)  # output pixels per input pixel at scale 1
    size = (max(1, round(width * out_scale)), max(1, round(height * out_scale)))
    rows, cols = np.nonzero(padded_cell)
    centre_x, centre_y = cols.mean() + 0.5, rows.mean() + 0.5
    zoom = scale * out_scale  # output pixels per input pixel
    # The cell's centre stays where it was in the frame; output pixel (u, v)
    # shows the padded photo's point (u / zoom + offset_x, v / zoom + offset_y).
    offset_x = centre_x - (centre_x - pad) * out_scale / zoom
    offset_y = centre_y - (centre_y - pad) * out_scale / zoom
    inverse = (1 / zoom, 0, offset_x, 0, 1 / zoom, offset_y)

    def warp(channel: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F")
                          .transform(size, Image.Transform.AFFINE, inverse, resample=Image.Resampling.BILINEAR))

    channels = np.stack([warp(pixels[..., c]) for c in range(3)], axis=-1)
    return channels, warp(padded_cell.astype(np.float32)) > 0.5
