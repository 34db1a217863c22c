"""How often each model keeps its best guess when a test cell is shown in each training lab's look.

The Predict page's look swap (bloodcell.lookswap) renders an upload as each
training lab would have photographed it, from the numbers in
models/lab_looks.json, and tells the user whether the model's best guess
moved. This prints, per model, what that looks like on the test split: the
share of cells whose best guess is the same as photographed and in both
looks, and the accuracy in each look, so a user can weigh one swap against
the model's habit. Nothing is chosen with these figures.

    python -m benchmarks.look_swap [--models NAME ...] [--images N]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np

from bloodcell.config import DEFAULT_MODEL, SHIPPED_MODEL_NAMES, resolve_data_dir, resolve_models_dir
from bloodcell.data import load_manifest, manifest_path
from bloodcell.framing import frame_photo
from bloodcell.imaging import read_image
from bloodcell.inference import Classifier
from bloodcell.lookswap import LOOKS_FILE, load_looks, render_in_looks


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def habit(guesses: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """Guesses (images x [as photographed, each look]) -> share of images with one guess, accuracy per column."""
    kept = float(np.mean(np.all(guesses == guesses[:, :1], axis=1)))
    return kept, [float(np.mean(guesses[:, column] == labels)) for column in range(guesses.shape[1])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        default=list(dict.fromkeys((DEFAULT_MODEL, *SHIPPED_MODEL_NAMES))),
                        help="models to measure (default: the default model, then every other shipped one)")
    parser.add_argument("--images", type=int, metavar="N",
                        help="N test images spread evenly over the split (default: all)")
    args = parser.parse_args(argv)
    models_dir, data_dir = resolve_models_dir(), resolve_data_dir()
    looks = load_looks(models_dir / LOOKS_FILE)
    pairs = load_manifest(manifest_path(models_dir)).paths("test")
    if args.images:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, args.images).round().astype(int)]

    started = time.perf_counter()
    labels, sources, skipped = [], [], 0
    for path, label in pairs:
        photo = read_image(data_dir / path)
        framing = frame_photo(photo)
        if framing.mask.problem is not None:  # the page offers no swap for these either
            skipped += 1
            continue
        labels.append(label)
        sources.append([(data_dir / path).read_bytes(), *(png(r.image) for r in render_in_looks(framing, looks))])
    labs = sorted(looks)
    print(f"{len(labels)} test cells rendered in {len(labs)} looks in {time.perf_counter() - started:.0f} s "
          f"({skipped} flagged by the cell mask, left out)")
    labels = np.array(labels)
    print("| model | same guess in both looks | accuracy as photographed | "
          + " | ".join(f"in {lab}'s look" for lab in labs) + " |")
    print("|---|---:|---:|" + "---:|" * len(labs))
    for name in args.models:
        classifier = Classifier.load(name, models_dir)
        guesses = np.array([[p.predicted_class for p in classifier.predict_sources(row)] for row in sources])
        kept, accuracies = habit(guesses, labels)
        print(f"| {name} | {kept:.1%} | " + " | ".join(f"{a:.1%}" for a in accuracies) + " |", flush=True)


if __name__ == "__main__":
    main()
