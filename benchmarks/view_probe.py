"""Which view carries over to another lab: linear probes on frozen ImageNet features.

Two runs of one training recipe differ by 13-19 points on the cross-source
cells (docs/lab-notebook.md), so a single trained model cannot say which
view carries over to a third lab. A linear probe has no such lottery: the
frozen ImageNet MobileNetV2 features (global average pool) of each cell's
view, and a standardised logistic regression on them. Nothing in the network
is trained, so the same data give the same figures.

Views: the cell view, the grey cell view and the nucleus view
(bloodcell.cellview.nucleus_view: the cytoplasm painted one flat level).
Each probe is fitted on the training photos, and again on the training
photos plus each one's counterfactual twin (celltwin's twins). It prints
the validation and test accuracy and, with --cross-source, the accuracy and
the answers on that folder (evaluation only: nothing is chosen on it here).

    python -m benchmarks.view_probe [--data DIR] [--cross-source DIR] [--limit N] [--json OUT]

All 4,500 photos and 3,150 twins take about an hour on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from bloodcell.cellmask import find_cell
from bloodcell.cellview import cell_view_and_mask, grey_of_cell_views, nucleus_view
from bloodcell.config import (CLASS_NAMES, resolve_cross_source_dir, resolve_data_dir, resolve_imagenet_weights,
                              resolve_models_dir)
from bloodcell.counterfactual import BY_WHITE_CELLS, counterfactual_of, lab_looks
from bloodcell.data import check_data_dir, list_images, load_manifest, manifest_path
from bloodcell.imaging import read_image

VIEWS = ("cell view", "grey cell view", "nucleus view")
SIZE = 224
BATCH = 32
PROBE_C = 1.0  # fixed in the rule, before any measurement


def views_of(image: Image.Image) -> list[np.ndarray]:
    """The three views of one photo (float32 0..255), its cell mask found once."""
    mask = find_cell(image)
    colour, _ = cell_view_and_mask(image, SIZE, mask)
    return [colour, grey_of_cell_views(colour), nucleus_view(image, SIZE, mask)]


def feature_extractor(weights: str):
    """ImageNet MobileNetV2 without its top, averaged over the feature map: views (N, 224, 224, 3) -> (N, 1280)."""
    import keras

    backbone = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), include_top=False,
                                              weights=weights, pooling="avg")
    return lambda views: backbone.predict(np.asarray(views, np.float32) / 127.5 - 1.0, verbose=0)


def features_of(images, extract) -> np.ndarray:
    """(len(images), len(VIEWS), 1280) features; `images` yields PIL images."""
    out, pending = [], []
    for image in images:
        pending.append(views_of(image))
        if len(pending) == BATCH:
            out.append(_extract(pending, extract))
            pending = []
    if pending:
        out.append(_extract(pending, extract))
    return np.concatenate(out)


def _extract(pending: list[list[np.ndarray]], extract) -> np.ndarray:
    per_view = [extract(np.stack([views[v] for views in pending])) for v in range(len(VIEWS))]
    return np.stack(per_view, axis=1)


def fit_probe(features: np.ndarray, labels: np.ndarray):
    """A standardised logistic regression (C = PROBE_C) on one view's features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=3000)).fit(features, labels)


def probe_figures(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], twins: np.ndarray,
                  cross: np.ndarray | None = None, cross_labels: np.ndarray | None = None) -> dict[str, dict]:
    """Each view's probe, fitted on the training photos and on them plus their twins, measured.

    `features` and `labels` hold the splits "train", "val" and "test";
    features are (N, len(VIEWS), D), twins the training photos' in order.
    """
    report = {}
    for v, view in enumerate(VIEWS):
        for with_twins in (False, True):
            x, y = features["train"][:, v], labels["train"]
            if with_twins:
                x, y = np.concatenate([x, twins[:, v]]), np.concatenate([y, y])
            probe = fit_probe(x, y)
            row = {split: float(np.mean(probe.predict(features[split][:, v]) == labels[split]))
                   for split in ("val", "test")}
            if cross is not None:
                answers = probe.predict(cross[:, v])
                row["cross_source"] = float(np.mean(answers == cross_labels))
                row["cross_source_answers"] = {CLASS_NAMES[k]: n for k, n in sorted(Counter(answers.tolist()).items())}
            report[f"{view}{' + twins' if with_twins else ''}"] = row
    return report


def _spread(items: list, limit: int | None) -> list:
    """At most `limit` of `items`, evenly spaced (so every class of a sorted list is kept)."""
    if limit is None or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--cross-source", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="at most N images per split (a quick check)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    started = time.perf_counter()
    data_dir = resolve_data_dir(args.data)
    manifest = load_manifest(manifest_path(resolve_models_dir()))
    looks = lab_looks(manifest, data_dir)
    extract = feature_extractor(resolve_imagenet_weights())
    splits = {name: _spread(manifest.paths(name), args.limit) for name in ("train", "val", "test")}
    labels = {name: np.array([CLASS_NAMES.index(label) for _, label in pairs]) for name, pairs in splits.items()}
    features = {name: features_of((read_image(data_dir / path) for path, _ in pairs), extract)
                for name, pairs in splits.items()}
    # The twins as celltwin's recipe renders them (bloodcell.pipeline): the
    # field index is the image's position in the training list.
    twins = features_of((counterfactual_of(read_image(data_dir / path), label, looks, index, ruler=BY_WHITE_CELLS)
                         for index, (path, label) in enumerate(splits["train"])), extract)
    cross_dir = resolve_cross_source_dir(args.cross_source)
    cross = cross_labels = None
    if cross_dir is not None:
        cross_files = [(path, label) for label in check_data_dir(cross_dir, require_all_classes=False)
                       for path in list_images(cross_dir / label)]
        cross_files = _spread(cross_files, args.limit)
        cross_labels = np.array([CLASS_NAMES.index(label) for _, label in cross_files])
        cross = features_of((read_image(path) for path, _ in cross_files), extract)
    print(f"features of {sum(len(p) for p in splits.values())} photos and {len(twins)} twins "
          f"in {time.perf_counter() - started:.0f} s")

    report = probe_figures(features, labels, twins, cross, cross_labels)
    for key, row in report.items():
        text = f"{key:24s} validation {row['val']:.2%}  test {row['test']:.2%}"
        if cross is not None:
            text += f"  cross-source {row['cross_source']:.2%} {row['cross_source_answers']}"
        print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
