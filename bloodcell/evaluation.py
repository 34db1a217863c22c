"""Evaluate a model on any folder in the dataset layout (or one split of the dataset), and collect input files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bloodcell.config import CLASS_NAMES, IMAGE_SUFFIXES
from bloodcell.data import SPLITS, check_data_dir, check_manifest_files, list_images, load_manifest, manifest_path
from bloodcell.errors import BloodcellError
from bloodcell.inference import Classifier
from bloodcell.metrics import classification_metrics

log = logging.getLogger("bloodcell")


def collect_labelled_images(data_dir: Path) -> list[tuple[Path, str]]:
    """(path, class) for every image under `data_dir`/<class>/ (any subset of the classes)."""
    data_dir = Path(data_dir)
    return [(path, label) for label in check_data_dir(data_dir, require_all_classes=False)
            for path in list_images(data_dir / label)]


def split_images(classifier: Classifier, data_dir: Path, split: str) -> list[tuple[Path, str]]:
    """(path, class) for the images of one split of the split manifest the model was trained with.

    The manifest is the one in the folder that holds the model
    (`<models>/split.json`); a model whose card names another split is
    refused, since its "validation" images would be some of its training
    ones.
    """
    if split not in SPLITS:
        raise BloodcellError(f"unknown split '{split}' (choose from: {', '.join(SPLITS)})")
    path = manifest_path(Path(classifier.model_dir).parent)
    manifest = load_manifest(path)
    trained_on = (classifier.card.get("split") or {}).get("manifest_sha256")
    if trained_on and trained_on != manifest.content_hash():
        raise BloodcellError(f"{classifier.name} was trained on another split than {path}; "
                             f"its {split} split is unknown here")
    check_manifest_files(manifest, path, data_dir, split=split)
    return [(Path(data_dir) / name, label) for name, label in manifest.paths(split)]


def evaluate_folder(model: str | Classifier, data_dir: Path, models_dir: Path | None = None,
                    split: str | None = None) -> dict:
    """Metrics of `model` on every readable image under `data_dir`/<class>/, or on one split of it.

    The folder may hold any subset of the classes; unreadable files are
    skipped with a warning that names them. With `split` ("train", "val" or
    "test") only that split's images are used (split_images), as the
    recipes' rules measure a candidate on the validation split first.
    """
    classifier = model if isinstance(model, Classifier) else Classifier.load(model, models_dir)
    data_dir = Path(data_dir)
    pairs = split_images(classifier, data_dir, split) if split else collect_labelled_images(data_dir)
    paths = [path for path, _ in pairs]
    labels = [CLASS_NAMES.index(label) for _, label in pairs]
    results = classifier.predict_sources(paths, [p.relative_to(data_dir).as_posix() for p in paths])
    kept_true, kept_pred, skipped = [], [], []
    for result, label in zip(results, labels):
        if result.error is not None:
            log.warning("skipping %s: %s", result.source, result.error)
            skipped.append({"file": result.source, "error": result.error})
            continue
        kept_true.append(label)
        kept_pred.append(int(np.argmax(result.probabilities)))
    if not kept_true:
        raise BloodcellError(f"no readable images in the class folders of {data_dir}")
    metrics = classification_metrics(kept_true, kept_pred)
    metrics.update({"model": classifier.name, "data": str(data_dir), "split": split, "skipped": skipped})
    return metrics


def collect_image_paths(paths: list[Path]) -> list[Path]:
    """Expand folders into the image files inside them; keep files as given.

    A named file is kept whatever its suffix, so that a bad file gets a row
    with its error instead of vanishing.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*"))
                         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            raise BloodcellError(f"no such file or folder: {path}")
    if not files:
        raise BloodcellError("no image files found in the given paths")
    return files
