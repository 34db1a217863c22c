"""Do the models read the labs' JPEG compression? Photos and twins, saved as each lab saves.

The two training labs saved their photos differently (bloodcell.compression):
Barcelona at about JPEG quality 75 with colour at full resolution, Munich at
about 95 with colour at half resolution. The audit's twins are rendered on the
photo's pixel grid and kept lossless, so a Munich cell's twin carries none of
Barcelona's block artefacts, which every Barcelona photo's cell has. If a
model put a Munich cell's twin in the Barcelona group once the twin is saved
as Barcelona saves, compression would be a lab cue the twins leave out.

Each image of the split is shown four ways: as its file; saved again with the
other lab's compression; as the audit's full twin (lossless); and as that twin
saved with the other lab's compression. Per model and rendering this prints
the accuracy, and for each lab's cells the share put in their own lab's group
of classes and the mean probability given to that group.

    python -m benchmarks.compression [--data DIR] [--models celltwin cellpair cellfocus] [--split val] [--limit N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.look_swap import png
from bloodcell.cellmask import find_cell
from bloodcell.compression import JpegSettings, common_jpeg_settings, compress_like
from bloodcell.config import CLASS_NAMES, SOURCE_LAB, other_lab, resolve_data_dir, resolve_models_dir
from bloodcell.counterfactual import LabLook, counterfactual_of, lab_looks
from bloodcell.data import SplitManifest, load_manifest, manifest_path
from bloodcell.imaging import read_image
from bloodcell.inference import Classifier
from bloodcell.pairing import GROUP_OF_CLASS, GROUPS, LABS

RENDERINGS = ("photo", "photo, other lab's JPEG", "twin", "twin, other lab's JPEG")
DEFAULT_MODELS = ("celltwin", "cellpair", "cellfocus")


def lab_compression(manifest: SplitManifest, data_dir: Path) -> dict[str, JpegSettings | None]:
    """Each lab's most common compression over its training files (headers only)."""
    train = manifest.paths("train")
    return {lab: common_jpeg_settings(data_dir / path for path, label in train if SOURCE_LAB[label] == lab)
            for lab in LABS}


def renderings(path: Path, label: str, index: int, looks: dict[str, LabLook],
               compression: dict[str, JpegSettings | None]) -> dict[str, bytes]:
    """The four renderings of one image, as encoded files (the models decode them as uploads)."""
    photo = read_image(path)
    twin = counterfactual_of(photo, label, looks, index, find_cell(photo))
    settings = compression[other_lab(label)]
    if settings is None:
        raise ValueError(f"no JPEG among the {other_lab(label)} training files: nothing to compress like")
    return {"photo": path.read_bytes(), "photo, other lab's JPEG": png(compress_like(photo, settings)),
            "twin": png(twin), "twin, other lab's JPEG": png(compress_like(twin, settings))}


def group_measures(probabilities: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Accuracy; per lab, the share of its cells put in its own group and that group's mean probability."""
    truth = np.asarray([CLASS_NAMES.index(label) for label in labels])
    own_group = GROUP_OF_CLASS[truth]
    guessed = probabilities.argmax(axis=1)
    group_mass = probabilities @ GROUPS.T
    measures = {"accuracy": float(np.mean(guessed == truth))}
    for index, lab in enumerate(LABS):
        cells = own_group == index
        if cells.any():
            measures[f"{lab} own group"] = float(np.mean(GROUP_OF_CLASS[guessed[cells]] == index))
            measures[f"{lab} own group probability"] = float(group_mass[cells, index].mean())
    return measures


def measure(classifiers: dict[str, Classifier], pairs: list[tuple[str, str]], data_dir: Path,
            looks: dict[str, LabLook], compression: dict[str, JpegSettings | None]) -> dict[str, dict[str, dict]]:
    """model -> rendering -> group_measures."""
    rendered = {name: [] for name in RENDERINGS}
    for index, (path, label) in enumerate(pairs):
        for name, data in renderings(data_dir / path, label, index, looks, compression).items():
            rendered[name].append(data)
    labels = [label for _, label in pairs]
    results: dict[str, dict[str, dict]] = {}
    for model_name, classifier in classifiers.items():
        results[model_name] = {}
        for name in RENDERINGS:
            predictions = classifier.predict_sources(rendered[name])
            probabilities = np.stack([p.probabilities for p in predictions])
            results[model_name][name] = group_measures(probabilities, labels)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (default: $BLOODCELL_DATA)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="model names or folders")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int, help="only the first N images of the split (a quick run)")
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data)
    models_dir = resolve_models_dir()
    manifest = load_manifest(manifest_path(models_dir))
    compression = lab_compression(manifest, data_dir)
    for lab, settings in compression.items():
        print(f"{lab}: {settings.describe() if settings else 'no JPEG files'}")
    pairs = manifest.paths(args.split)[:args.limit]
    classifiers = {name: Classifier.load(name, models_dir) for name in args.models}
    results = measure(classifiers, pairs, data_dir, lab_looks(manifest, data_dir), compression)
    print(f"{len(pairs)} {args.split} images; own group: the share of each lab's cells put in its own lab's "
          "group of classes (mean probability of that group)")
    for model_name, rows in results.items():
        for name, row in rows.items():
            groups = "  ".join(f"{lab} {row[lab + ' own group']:6.1%} ({row[lab + ' own group probability']:.3f})"
                               for lab in LABS if lab + " own group" in row)
            print(f"{model_name:10s} {name:24s} accuracy {row['accuracy']:6.1%}  own group: {groups}")


if __name__ == "__main__":
    main()
