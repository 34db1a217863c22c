"""How well the cell mask finds the cell in each counterfactual twin, on the validation split.

The audit cuts every twin's cell view with the mask it finds on the twin,
as the app would on a real photo from the other lab. Where that mask differs
from the cell that was pasted in, the drop charges the model for the mask's
mistake, or for a flaw of the twin itself (see "Where the field and stain
parts of the drop come from" in the lab notebook). This prints, per lab, the
median overlap (IoU) of the mask found on each full twin with the pasted
cell's mask, and the share of twins under 0.8 and 0.5. No model is involved.

    python -m benchmarks.twin_masks [--data DIR] [--split val]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image
from scipy import ndimage

from bloodcell.cellmask import CellMask, find_cell
from bloodcell.config import SOURCE_LAB, other_lab, resolve_data_dir, resolve_models_dir
from bloodcell.counterfactual import LabLook, counterfactual_of, lab_looks, lab_zoom, magnification_ruler, zoom_about
from bloodcell.data import load_manifest, manifest_path
from bloodcell.framing import frame_photo
from bloodcell.imaging import read_image


def iou(first: np.ndarray, second: np.ndarray) -> float:
    union = (first | second).sum()
    return float((first & second).sum() / union) if union else 1.0


def pasted_cell(mask: CellMask, zoom: float) -> np.ndarray:
    """Where bloodcell.counterfactual.as_other_lab puts the cell: its soft mask, zoomed about its centre."""
    alpha = ndimage.gaussian_filter(mask.cell.astype(np.float32), 1.5)
    rows, cols = np.nonzero(mask.cell)
    centre = (float(cols.mean()) + 0.5, float(rows.mean()) + 0.5)
    return np.asarray(zoom_about(Image.fromarray(alpha, mode="F"), zoom, centre)) > 0.5


def twin_mask_overlaps(pairs: list[tuple[str, str]], data_dir, looks: dict[str, LabLook]) -> dict[str, list[float]]:
    """Per lab, the IoU of the mask found on each image's full twin with the pasted cell."""
    ruler = magnification_ruler(looks)
    overlaps: dict[str, list[float]] = {lab: [] for lab in looks}
    for index, (path, label) in enumerate(pairs):
        framing = frame_photo(read_image(data_dir / path))
        if not framing.mask.found:
            continue
        twin = counterfactual_of(framing.image, label, looks, index, framing.mask, ruler=ruler)
        zoom = lab_zoom(looks[SOURCE_LAB[label]], looks[other_lab(label)], ruler)
        overlaps[SOURCE_LAB[label]].append(iou(pasted_cell(framing.mask, zoom), find_cell(twin).cell))
    return overlaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (default: $BLOODCELL_DATA)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data)
    manifest = load_manifest(manifest_path(resolve_models_dir()))
    overlaps = twin_mask_overlaps(manifest.paths(args.split), data_dir, lab_looks(manifest, data_dir))
    everything = [value for values in overlaps.values() for value in values]
    for lab, values in [*overlaps.items(), ("all", everything)]:
        values = np.asarray(values)
        print(f"{lab + (' cells' if lab != 'all' else ''):20s} twins {len(values):4d}  median IoU {np.median(values):.3f}  "
              f"under 0.8 {np.mean(values < 0.8):6.1%}  under 0.5 {np.mean(values < 0.5):6.1%}")


if __name__ == "__main__":
    main()
