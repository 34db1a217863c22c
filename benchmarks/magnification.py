"""Accuracy on test cells photographed at a lower or a higher magnification, with and without framing.

A user's microscope or camera rarely matches the training scanners. This
benchmark shows each test cell as a camera at 1/ZOOM of the magnification
would: the photo in the middle of a field ZOOM times wider (the photo's own
background with its white cell painted over, mirrored outwards, so the new
edges hold red cells at the photo's scale), shrunk back to the photo's size.
It prints each model's accuracy on these photos as given and as
bloodcell.framing crops them, and how often the red-cell ruler measured
enough red cells to reframe. The mirrored field is a stand-in for a real
wider photo: its red cells repeat, and the seam around the original photo
stays faintly visible.

A closer camera (CLOSER) needs no stand-in: the middle of the photo around
its white cell, enlarged to the photo's size (closer_field). Framing leaves
such photos as they are; the benchmark prints each model's accuracy on them
and how often their red cells still make a ruler, and how often that ruler
says "higher than 98% of the training photos", the Predict page's warning.

    python -m benchmarks.magnification [--models cellfocus,mobilenetv2] [--images 100] [--data DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from bloodcell.cellmask import find_cell
from bloodcell.config import CLASS_NAMES, DEFAULT_MODEL, resolve_data_dir, resolve_models_dir
from bloodcell.counterfactual import empty_field
from bloodcell.data import load_manifest, manifest_path
from bloodcell.framing import MIN_RULER_RED_CELLS, frame_photo
from bloodcell.imaging import read_image, to_model_input
from bloodcell.inference import Classifier
from bloodcell.redcells import TRAINING_RED_CELL_RANGE

ZOOMS = (1.0, 1.5, 2.0, 3.0)
CLOSER = (1.25, 1.5, 2.0)
SEED = 0


def wider_field(image: Image.Image, zoom: float) -> Image.Image:
    """`image` as a camera at 1/`zoom` of its magnification would show it, same pixel size."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    wide_width, wide_height = round(width * zoom), round(height * zoom)
    left, top = (wide_width - width) // 2, (wide_height - height) // 2
    field = np.pad(empty_field(rgb, find_cell(rgb)),
                   ((top, wide_height - height - top), (left, wide_width - width - left), (0, 0)),
                   mode="symmetric")
    wide = Image.fromarray(field)
    wide.paste(rgb, (left, top))
    return wide.resize((width, height), Image.Resampling.BILINEAR)


def closer_field(image: Image.Image, zoom: float) -> Image.Image:
    """`image` as a camera at `zoom` times its magnification would show it, same pixel size.

    The photo's middle 1/`zoom`, centred on its white cell as far as the
    photo's edges allow, enlarged back to the photo's size.
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    mask = find_cell(rgb)
    centre_x, centre_y = width / 2, height / 2
    if mask.found:
        rows, cols = np.flatnonzero(mask.cell.any(axis=1)), np.flatnonzero(mask.cell.any(axis=0))
        centre_x, centre_y = (cols[0] + cols[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2
    crop_width, crop_height = width / zoom, height / zoom
    left = min(max(centre_x - crop_width / 2, 0), width - crop_width)
    top = min(max(centre_y - crop_height / 2, 0), height - crop_height)
    return rgb.resize((width, height), Image.Resampling.BICUBIC,
                      box=(left, top, left + crop_width, top + crop_height))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODEL, help="comma-separated model names")
    parser.add_argument("--images", type=int, default=100, help="test images, drawn at random")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    data_dir = resolve_data_dir(args.data)
    manifest = load_manifest(manifest_path(resolve_models_dir()))
    test = manifest.paths("test")
    chosen = np.random.default_rng(SEED).choice(len(test), min(args.images, len(test)), replace=False)
    pairs = [test[i] for i in sorted(chosen)]
    photos = {zoom: [] for zoom in ZOOMS}
    closer = {zoom: [] for zoom in CLOSER}
    for path, _ in pairs:
        image = read_image(data_dir / path)
        for zoom in ZOOMS:
            shown = image if zoom == 1 else wider_field(image, zoom)
            photos[zoom].append((shown, frame_photo(shown)))
        for zoom in CLOSER:
            shown = closer_field(image, zoom)
            closer[zoom].append((shown, frame_photo(shown)))
    labels = np.array([CLASS_NAMES.index(label) for _, label in pairs])

    print(f"{len(pairs)} test images; accuracy as given -> as framed (reframed photos) at 1/zoom of the "
          "magnification, then as framed at zoom times it")
    for name in args.models.split(","):
        classifier = Classifier.load(name)
        cells = []
        for zoom in ZOOMS:
            given = np.stack([to_model_input(shown, classifier.input_size, classifier.view)
                              for shown, _ in photos[zoom]])
            framed = np.stack([to_model_input(f.image, classifier.input_size, classifier.view, f.mask)
                               for _, f in photos[zoom]])
            before = np.mean(classifier.predict_proba(given).argmax(axis=1) == labels)
            after = np.mean(classifier.predict_proba(framed).argmax(axis=1) == labels)
            reframed = sum(f.reframed for _, f in photos[zoom])
            cells.append(f"1/{zoom:g}: {before:.0%} -> {after:.0%} ({reframed})")
        for zoom in CLOSER:
            inputs = np.stack([to_model_input(f.image, classifier.input_size, classifier.view, f.mask)
                               for _, f in closer[zoom]])
            right = np.mean(classifier.predict_proba(inputs).argmax(axis=1) == labels)
            cells.append(f"x{zoom:g}: {right:.0%}")
        print(f"{name:12s} " + " | ".join(cells), flush=True)
    high = TRAINING_RED_CELL_RANGE[1]
    for zoom in CLOSER:
        framings = [f for _, f in closer[zoom]]
        ruled = [f for f in framings if f.red_cell_size is not None and f.red_cells >= MIN_RULER_RED_CELLS]
        measured = [f for f in framings if f.red_cell_size is not None]
        warned = sum(f.red_cell_size > high for f in measured)
        print(f"x{zoom:g} closer: {sum(f.reframed for f in framings)} reframed; red cells measured in "
              f"{len(measured)} (three or more in {len(ruled)}); {warned} warned as above {high:.0%} of the side")


if __name__ == "__main__":
    main()
