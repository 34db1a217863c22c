"""Shortcut audit: is a model right for the right reason?

Our classes come from two labs, so the lab (stain, background, scanner)
gives the label away. A model can score 99% on the test split by reading the
lab instead of the cell, and then fail on any cell from a third microscope.
This audit measures that from five sides and writes `audit.json` beside the
model:

1. label-blind baselines: how far mean colour, a colour histogram, the
   colour of the image corners, or the nucleus' colours against the
   cytoplasm's (which no re-staining changes) alone get on the same split
   (the lab), and the opposite, the cell's silhouette alone without colour
   or texture;
2. where the model looks: the share of its Grad-CAM mass on the white cell
   (cell mask from bloodcell.cellmask) against the cell's share of the image;
3. counterfactual test: the test split re-stained and re-backgrounded as the
   other lab's (bloodcell.counterfactual), accuracy against the original;
4. cross-source check: accuracy on cells of a known class from another lab
   (evaluation only: nothing is ever trained, tuned or chosen on it);
5. abstention: how many real cells are flagged, and whether images that are
   not a single blood cell are.

Test, counterfactual and cross-source figures come with 95% intervals
(bloodcell.metrics), because a few hundred images cannot tell 99.41% from
99.56%.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from bloodcell.abstention import NOT_A_CELL, OK
from bloodcell.cellmask import CellMask, find_cell
from bloodcell.cellview import view_and_mask
from bloodcell.config import CLASS_NAMES, SOURCE_LAB, other_lab
from bloodcell.counterfactual import (BY_RED_CELLS, COUNTERFACTUAL_PARTS, LOOK_IMAGES, LOOK_SEED, counterfactual_of,
                                      lab_looks, learns_from_twins, magnification_ruler)
from bloodcell.data import load_or_create_manifest
from bloodcell.errors import BloodcellError
from bloodcell.evaluation import collect_labelled_images
from bloodcell.explain import Explainer
from bloodcell.framing import frame_photo
from bloodcell.imaging import CELL_VIEW, CELL_VIEWS, FILL_CELL_VIEW, GREY_CELL_VIEW, read_image, to_model_input
from bloodcell.inference import Classifier, resolve_model_dir
from bloodcell.metrics import accuracy_interval, paired_difference_interval
from bloodcell.pairing import member_entries, members_sha256
from bloodcell.routing import ROLES
from bloodcell.silhouette import SHAPE_FEATURE_NAMES, shape_features, silhouette
from bloodcell.stain import part_relation

log = logging.getLogger("bloodcell")

AUDIT_FILE = "audit.json"
# The audit's samples (--limit, the probe field) use the seed the labs' looks are drawn with.
AUDIT_SEED = LOOK_SEED
HISTOGRAM_BINS = 16
# Corner patches: this fraction of the image side, in each of the 4 corners.
CORNER_FRACTION = 0.1
EXAMPLES_PER_KIND = 6


# --- 1. label-blind baselines: colour only, shape only -----------------------

def colour_features(image: Image.Image, mask: CellMask | None = None) -> dict[str, np.ndarray]:
    """Four label-blind descriptions of an image: mean colour, histogram, corners, and inside the
    white cell (`mask`, found when not given) the nucleus' colours against the cytoplasm's."""
    mask = mask or find_cell(image)
    relation = part_relation(np.asarray(image.convert("RGB")), *mask.parts())
    pixels = np.asarray(image.convert("RGB").resize((128, 128), Image.Resampling.BILINEAR), np.float32)
    histogram = np.concatenate([
        np.histogram(pixels[..., c], bins=HISTOGRAM_BINS, range=(0, 256))[0] for c in range(3)
    ]).astype(np.float32) / (128 * 128)
    k = max(1, int(128 * CORNER_FRACTION))
    corners = np.concatenate([pixels[:k, :k].mean(axis=(0, 1)), pixels[:k, -k:].mean(axis=(0, 1)),
                              pixels[-k:, :k].mean(axis=(0, 1)), pixels[-k:, -k:].mean(axis=(0, 1))])
    return {"mean_colour": pixels.mean(axis=(0, 1)), "colour_histogram": histogram, "corner_colour": corners,
            "stain_relation": relation}


BASELINE_DESCRIPTIONS = {
    "mean_colour": "logistic regression on the image's mean R, G and B",
    "colour_histogram": f"logistic regression on a {HISTOGRAM_BINS}-bin histogram per colour channel",
    "corner_colour": "logistic regression on the mean colour of the four corners (background only)",
    "stain_relation": "logistic regression on nine numbers that no re-staining changes: per colour channel, "
                      "the nucleus' mean minus the cytoplasm's and each one's spread, over the cell's spread "
                      "(bloodcell.stain.part_relation)",
}


def colour_baselines(train: list[dict], train_labels: list[int], test: list[dict],
                     test_labels: list[int], cross_source: list[tuple[dict, int]] | None = None) -> dict:
    """Fit each colour-only baseline on `train`; accuracy on `test` (and cross-source).

    Each image is given as its `colour_features`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def table(rows):
        return {name: np.stack([r[name] for r in rows]) for name in BASELINE_DESCRIPTIONS}

    train_x, test_x = table(train), table(test)
    cross_x = table([features for features, _ in cross_source]) if cross_source else None
    results = {}
    for name, description in BASELINE_DESCRIPTIONS.items():
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(train_x[name], train_labels)
        entry = {"description": description,
                 "test_accuracy": float(np.mean(model.predict(test_x[name]) == np.asarray(test_labels)))}
        if cross_x is not None:
            entry["cross_source_accuracy"] = float(
                np.mean(model.predict(cross_x[name]) == np.asarray([label for _, label in cross_source])))
        results[name] = entry
    return results


SHAPE_BASELINE_DESCRIPTION = (f"gradient boosting on {len(SHAPE_FEATURE_NAMES)} measurements of the cell's "
                              "silhouette (nucleus, cytoplasm and background as three flat levels, "
                              "bloodcell.silhouette): no colour, no texture, no size in the photo")


def shape_baseline(train: list[np.ndarray], train_labels: list[int], test: list[np.ndarray],
                   test_labels: list[int], cross_source: list[tuple[np.ndarray, int]] | None = None) -> dict:
    """Fit the silhouette-only baseline on `train`; accuracy on `test` (and cross-source).

    The colour baselines' opposite: it cannot see the lab's colour, so what it
    scores comes from the cell's shape. Each image is given as its
    bloodcell.silhouette.shape_features.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
    model.fit(np.stack(train), train_labels)
    entry = {"description": SHAPE_BASELINE_DESCRIPTION,
             "test_accuracy": float(np.mean(model.predict(np.stack(test)) == np.asarray(test_labels)))}
    if cross_source:
        predicted = model.predict(np.stack([features for features, _ in cross_source]))
        entry["cross_source_accuracy"] = float(
            np.mean(predicted == np.asarray([label for _, label in cross_source])))
    return entry


# --- 2. where the model looks ------------------------------------------------

def model_input_and_mask(classifier: Classifier, image: Image.Image,
                         mask: CellMask) -> tuple[np.ndarray, np.ndarray]:
    """What the model sees, and where the white cell is in it (bool, input size)."""
    size = classifier.input_size
    if classifier.view in CELL_VIEWS:
        return view_and_mask(image, size, classifier.view, mask)
    cell = Image.fromarray(mask.cell.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BILINEAR)
    return to_model_input(image, size), np.asarray(cell) >= 128


def heat_on_cell(heatmap: np.ndarray, cell: np.ndarray) -> float:
    """Share of a heatmap's mass that falls on the cell (NaN for an empty map)."""
    heat = np.asarray(heatmap, np.float64)
    total = heat.sum()
    return float(heat[cell].sum() / total) if total > 0 else float("nan")


# --- 5. abstention probes ----------------------------------------------------

def probe_images(cells: list[Image.Image], seed: int = AUDIT_SEED) -> dict[str, Image.Image]:
    """Images that are not a single blood cell: each should be flagged."""
    rng = np.random.default_rng(seed)
    across, down = np.meshgrid(np.linspace(0, 255, 360), np.linspace(255, 0, 360))
    probes = {
        "blank slide": Image.new("RGB", (360, 360), (236, 226, 214)),
        "random noise": Image.fromarray(rng.integers(0, 256, (360, 360, 3), dtype=np.uint8)),
        "colour gradient": Image.fromarray(np.dstack([across, down, np.full_like(across, 128)]).astype(np.uint8)),
    }
    if len(cells) >= 4:
        side = 180
        field = Image.new("RGB", (2 * side, 2 * side))
        for index, cell in enumerate(cells[:4]):
            field.paste(cell.convert("RGB").resize((side, side)), ((index % 2) * side, (index // 2) * side))
        probes["field of four cells"] = field
    try:  # scikit-image ships two everyday photos; use them when it is installed
        from skimage import data as skimage_data

        probes["photo of a cat (scikit-image)"] = Image.fromarray(skimage_data.chelsea())
        probes["photo of coffee (scikit-image)"] = Image.fromarray(skimage_data.coffee())
    except ImportError:
        pass
    return probes


# --- the audit ---------------------------------------------------------------

def trained_on_twins(card: dict) -> bool:
    """Whether a model card's recipe showed it counterfactual twins, in place of some training
    views or beside each one (for a pair or a cascade: whether any of its models' did)."""
    members = [entry for _, entry in member_entries(card["pair"])] if card.get("pair") else []
    members += [card["route"][role] for role in ROLES] if card.get("route") else []
    return learns_from_twins(card.get("hyperparameters") or {}) or any(
        member.get("trained_on_twins") for member in members)


def _accuracy(predicted: list[int], labels: list[int]) -> float:
    return float(np.mean(np.asarray(predicted) == np.asarray(labels))) if labels else float("nan")


def paired_counts(labels: list[int], original: list[int], counterfactual: list[int]) -> dict[str, int]:
    """How the originals and their twins agree, image by image: what the drop's interval needs."""
    right = np.asarray(original) == np.asarray(labels)
    twin_right = np.asarray(counterfactual) == np.asarray(labels)
    return {"both_right": int(np.sum(right & twin_right)), "only_original_right": int(np.sum(right & ~twin_right)),
            "only_counterfactual_right": int(np.sum(~right & twin_right)),
            "both_wrong": int(np.sum(~right & ~twin_right))}


def drop_interval(counterfactual: dict) -> tuple[float, float] | None:
    """95% interval of the counterfactual drop in points, or None for an audit without paired counts."""
    counts = counterfactual.get("paired_counts")
    if not counts:
        return None
    low, high = paired_difference_interval(counts["both_right"], counts["only_original_right"],
                                           counts["only_counterfactual_right"], counts["both_wrong"])
    return 100 * low, 100 * high


def per_class_accuracy(labels: list[int], original: list[int], counterfactual: list[int]) -> dict:
    """Per true class: accuracy on the originals and on their counterfactual twins.

    The overall drop hides which way the shortcut runs: a cell of a Munich
    class shown with the Barcelona look is what a user with a PBC-style
    microscope uploads.
    """
    labels = np.asarray(labels)
    rows = {}
    for index, name in enumerate(CLASS_NAMES):
        chosen = labels == index
        if chosen.any():
            rows[name] = {"images": int(chosen.sum()),
                          "original_accuracy": float(np.mean(np.asarray(original)[chosen] == index)),
                          "counterfactual_accuracy":
                              float(np.mean(np.asarray(counterfactual)[chosen] == index))}
    return rows


def run_audit(model: str, data_dir: Path, models_dir: str | Path | None = None,
              cross_source_dir: Path | None = None, limit: int | None = None) -> dict:
    """Run every check for `model` and write `audit.json` beside it."""
    started = time.perf_counter()
    model_dir = resolve_model_dir(model, models_dir)
    classifier = Classifier.load(str(model_dir))
    explainer = Explainer(classifier)
    data_dir = Path(data_dir)
    manifest = load_or_create_manifest(data_dir, model_dir.parent)
    rng = np.random.default_rng(AUDIT_SEED)

    test_pairs = manifest.paths("test")
    if limit is not None:
        if limit < 1:
            raise BloodcellError("--limit must be at least 1")
        test_pairs = [test_pairs[i] for i in sorted(rng.choice(len(test_pairs), min(limit, len(test_pairs)),
                                                                replace=False))]
    log.info("auditing %s on %d test images", classifier.name, len(test_pairs))
    looks = lab_looks(manifest, data_dir)
    ruler = magnification_ruler(looks)
    measured_cells = "red cell" if ruler == BY_RED_CELLS else "white cell"

    labels, original, counterfactual, heat_shares, area_shares, flagged = [], [], [], [], [], []
    part_predictions: dict[str, list[int]] = {part: [] for part in COUNTERFACTUAL_PARTS}
    examples: dict[str, list[dict]] = {"test_error": [], "counterfactual_flip": [], "cross_source_error": []}
    test_colours, test_shapes, first_cells = [], [], []
    for index, (path, label) in enumerate(test_pairs):
        image = read_image(data_dir / path)
        mask = find_cell(image)
        test_colours.append(colour_features(image, mask))
        if len(first_cells) < 4:
            first_cells.append(image)
        test_shapes.append(shape_features(silhouette(mask)))
        # What the model is shown from here on, as in the app (the photo as it
        # is for all but a few whose red cells are unusually small).
        framing = frame_photo(image, mask)
        photo, image, mask = image, framing.image, framing.mask
        model_input, cell = model_input_and_mask(classifier, image, mask)
        explanation = explainer.gradcam(model_input)
        prediction = classifier.assess(path, photo, model_input, framing)
        predicted = int(np.argmax(explanation.probabilities))
        heat_shares.append(heat_on_cell(explanation.heatmap, cell))
        area_shares.append(float(cell.mean()))
        flagged.append(prediction.verdict() != OK)

        # The full twin first, then one twin per part of the look.
        twins = [counterfactual_of(image, label, looks, index, mask, part, ruler)
                 for part in (None, *COUNTERFACTUAL_PARTS)]
        twins_probabilities = classifier.predict_proba(
            np.stack([classifier_input(classifier, twin) for twin in twins]))
        twin_probabilities = twins_probabilities[0]
        twin_predicted = int(np.argmax(twin_probabilities))
        for part, probabilities in zip(COUNTERFACTUAL_PARTS, twins_probabilities[1:]):
            part_predictions[part].append(int(np.argmax(probabilities)))

        true = CLASS_NAMES.index(label)
        labels.append(true)
        original.append(predicted)
        counterfactual.append(twin_predicted)
        if predicted != true and len(examples["test_error"]) < EXAMPLES_PER_KIND:
            examples["test_error"].append(_example(path, label, predicted, explanation.probabilities))
        if predicted == true and twin_predicted != true and \
                len(examples["counterfactual_flip"]) < EXAMPLES_PER_KIND:
            examples["counterfactual_flip"].append(
                {**_example(path, label, twin_predicted, twin_probabilities), "field_index": index})

    report = {
        "model": classifier.name,
        "model_sha256": classifier.card.get("file_sha256"),
        # A pair or a cascade has no file of its own: its members' files name it.
        **({"members_sha256": members_sha256(classifier.card["pair"])} if classifier.card.get("pair") else {}),
        **({"members_sha256": {role: classifier.card["route"][role]["sha256"] for role in ROLES}}
           if classifier.card.get("route") else {}),
        "view": classifier.view,
        # A model trained on the twins has seen the counterfactual's transform:
        # its drop is then no independent evidence that it ignores the lab.
        "trained_on_twins": trained_on_twins(classifier.card),
        "audited_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "test_images": len(test_pairs),
        "limited": limit is not None,
        "test_accuracy": _accuracy(original, labels),
        "gradcam_on_cell": {
            "mean_share_on_cell": float(np.nanmean(heat_shares)),
            "mean_cell_area_share": float(np.mean(area_shares)),
            "images_mostly_on_cell": float(np.nanmean(np.asarray(heat_shares) > 0.5)),
            "per_class_share_on_cell": {
                name: float(np.nanmean([s for s, t in zip(heat_shares, labels) if t == i]))
                for i, name in enumerate(CLASS_NAMES) if i in labels
            },
        },
        "counterfactual": {
            "description": "each test image's cell re-stained to the other lab's average cell colours "
                           "(Reinhard transfer in LAB), scaled to the other lab's magnification (the ratio "
                           f"of the labs' median {measured_cells} size in the frame), blurred or sharpened "
                           "to the other lab's fine detail (the ratio of the labs' median detail inside the cell), and "
                           "its background outside the "
                           f"cell mask replaced by an empty field from one of {LOOK_IMAGES} training images "
                           "of the other lab",
            "original_accuracy": _accuracy(original, labels),
            "counterfactual_accuracy": _accuracy(counterfactual, labels),
            "changed_predictions": float(np.mean(np.asarray(original) != np.asarray(counterfactual))),
            "lab_stains": {lab: look.cell_stain.to_dict() for lab, look in looks.items()},
            "lab_cell_sizes": {lab: look.cell_size for lab, look in looks.items()},
            "lab_red_cell_sizes": {lab: look.red_cell_size for lab, look in looks.items()},
            "magnification_by": ruler,
            "lab_cell_details": {lab: look.detail for lab, look in looks.items()},
        },
    }
    report["counterfactual"]["drop_points"] = 100 * (
        report["counterfactual"]["original_accuracy"] - report["counterfactual"]["counterfactual_accuracy"])
    report["counterfactual"]["paired_counts"] = paired_counts(labels, original, counterfactual)
    report["counterfactual"]["per_class"] = per_class_accuracy(labels, original, counterfactual)
    # Each part of the look on its own (the rest the image's own lab's).
    report["counterfactual"]["parts"] = {
        part: {"accuracy": _accuracy(predicted, labels),
               "changed_predictions": float(np.mean(np.asarray(original) != np.asarray(predicted)))}
        for part, predicted in part_predictions.items()}
    report["abstention"] = {"test_flagged": float(np.mean(flagged))}

    cross = _cross_source(classifier, cross_source_dir, examples) if cross_source_dir else None
    if cross is not None:
        report["cross_source"] = cross
        report["abstention"]["cross_source_flagged"] = cross.pop("flagged")

    train_pairs = manifest.paths("train")
    train_labels = [CLASS_NAMES.index(label) for _, label in train_pairs]
    train_colours, train_shapes = _label_blind_features([data_dir / p for p, _ in train_pairs])
    cross_colours = cross_shapes = None
    if cross_source_dir:
        cross_pairs = collect_labelled_images(cross_source_dir)
        cross_labels = [CLASS_NAMES.index(label) for _, label in cross_pairs]
        colours, shapes = _label_blind_features([path for path, _ in cross_pairs])
        cross_colours, cross_shapes = list(zip(colours, cross_labels)), list(zip(shapes, cross_labels))
    report["colour_baselines"] = colour_baselines(train_colours, train_labels, test_colours, labels,
                                                  cross_colours)
    report["shape_baseline"] = shape_baseline(train_shapes, train_labels, test_shapes, labels, cross_shapes)

    probes = probe_images(first_cells)
    report["abstention"]["probes"] = {}
    for name, image in probes.items():
        result = classifier.assess(name, image)
        report["abstention"]["probes"][name] = {
            "verdict": result.verdict(), "predicted_class": result.predicted_class,
            "confidence": result.confidence, "ood_score": result.ood_score}
    report["abstention"]["probes_flagged_as_not_a_cell"] = float(np.mean(
        [p["verdict"] == NOT_A_CELL for p in report["abstention"]["probes"].values()]))
    report["abstention"]["ood_threshold"] = None if classifier.outlier_detector is None else \
        classifier.outlier_detector.threshold
    report["examples"] = examples
    report["seconds"] = round(time.perf_counter() - started, 1)
    (model_dir / AUDIT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    return report


def classifier_input(classifier: Classifier, image: Image.Image) -> np.ndarray:
    return to_model_input(image, classifier.input_size, classifier.view)


def _label_blind_features(paths) -> tuple[list[dict], list[np.ndarray]]:
    """Each image's colour features and its silhouette's shape features, reading it once."""
    colours, shapes = [], []
    for path in paths:
        image = read_image(path)
        mask = find_cell(image)
        colours.append(colour_features(image, mask))
        shapes.append(shape_features(silhouette(mask)))
    return colours, shapes


def _example(path: str, label: str, predicted: int, probabilities: np.ndarray) -> dict:
    return {"path": path, "true": label, "predicted": CLASS_NAMES[predicted],
            "confidence": float(np.max(probabilities))}


def _cross_source(classifier: Classifier, folder: Path, examples: dict) -> dict:
    pairs = collect_labelled_images(folder)
    if not pairs:
        raise BloodcellError(f"no labelled images found in {folder} (expected <class>/<image>)")
    results = classifier.predict_sources([p for p, _ in pairs], [str(p) for p, _ in pairs])
    labels = [label for _, label in pairs]
    predicted = [r.predicted_class for r in results]
    for (path, label), result in zip(pairs, results):
        if result.predicted_class != label and len(examples["cross_source_error"]) < EXAMPLES_PER_KIND:
            examples["cross_source_error"].append(
                {"path": Path(path).relative_to(folder).as_posix(), "true": label,
                 "predicted": result.predicted_class, "confidence": result.confidence})
    counts = {name: predicted.count(name) for name in CLASS_NAMES}
    right = np.asarray([p == t for p, t in zip(predicted, labels)])
    answered = np.asarray([r.verdict() == OK for r in results])
    return {
        "folder": folder.name,
        "images": len(pairs),
        "accuracy": float(right.mean()),
        "predicted_counts": counts,
        "flagged": float(1 - answered.mean()),
        # What a user meets: the answers given without a warning, and how
        # many of those are right.
        "answered": int(answered.sum()),
        "accuracy_when_answered": float(right[answered].mean()) if answered.any() else None,
    }


def format_audit(report: dict) -> str:
    """The audit as a few lines of plain text for the terminal."""
    lines = [f"Shortcut audit of {report['model']} ({report['test_images']} test images"
             f"{', limited' if report['limited'] else ''})"]
    lines.append(f"  test accuracy                     {report['test_accuracy']:.2%}"
                 f"  {_interval_text(report['test_accuracy'], report['test_images'])}")
    for name, entry in report["colour_baselines"].items():
        extra = f"  (cross-source {entry['cross_source_accuracy']:.1%})" if "cross_source_accuracy" in entry else ""
        lines.append(f"  colour-only baseline {name:<17}{entry['test_accuracy']:.2%}{extra}")
    if "shape_baseline" in report:
        entry = report["shape_baseline"]
        extra = f"  (cross-source {entry['cross_source_accuracy']:.1%})" if "cross_source_accuracy" in entry else ""
        lines.append(f"  shape-only baseline (silhouette)  {entry['test_accuracy']:.2%}{extra}")
    cam = report["gradcam_on_cell"]
    lines.append(f"  Grad-CAM mass on the cell         {cam['mean_share_on_cell']:.1%} "
                 f"(the cell covers {cam['mean_cell_area_share']:.1%} of the input)")
    cf = report["counterfactual"]
    drop = drop_interval(cf)
    lines.append(f"  counterfactual (other lab's look) {cf['counterfactual_accuracy']:.2%} "
                 f"vs {cf['original_accuracy']:.2%} ({cf['drop_points']:+.1f} points drop"
                 + (f", 95% interval {drop[0]:+.1f} to {drop[1]:+.1f})" if drop else ")"))
    for part, entry in cf.get("parts", {}).items():
        ruler = cf.get("magnification_by") if part == "magnification" else None
        lines.append(f"    {part + ' alone':<31}{entry['accuracy']:.2%}"
                     + (f" (measured by {ruler})" if ruler else ""))
    if report.get("trained_on_twins"):
        lines.append("    (trained on counterfactual twins: this drop is not independent evidence; "
                     "the cross-source cells are)")
    if "cross_source" in report:
        cs = report["cross_source"]
        lines.append(f"  cross-source ({cs['folder']}, {cs['images']} images)  {cs['accuracy']:.2%}"
                     f"  {_interval_text(cs['accuracy'], cs['images'])}")
        if cs.get("accuracy_when_answered") is not None:
            lines.append(f"    answered without a flag: {cs['answered']}, of which right "
                         f"{cs['accuracy_when_answered']:.1%}")
    ab = report["abstention"]
    lines.append(f"  flagged: test {ab['test_flagged']:.1%}"
                 + (f", cross-source {ab['cross_source_flagged']:.1%}" if "cross_source_flagged" in ab else "")
                 + f", non-cell probes {ab['probes_flagged_as_not_a_cell']:.0%} as not a cell")
    return "\n".join(lines)


def _interval_text(accuracy: float, images: int) -> str:
    low, high = accuracy_interval(accuracy, images)
    return f"(95% interval {low:.2%} to {high:.2%})"


def load_audit(model_dir: Path) -> dict | None:
    """A model's saved audit, or None when it has not been audited."""
    path = Path(model_dir) / AUDIT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


SEES = {CELL_VIEW: "cell view", GREY_CELL_VIEW: "grey cell view", FILL_CELL_VIEW: "filled cell view"}


def summary_rows(audits: dict[str, dict]) -> list[dict]:
    """One row per audited model: the figures that say whether it reads the cell or the lab."""
    rows = []
    for name, report in audits.items():
        cf, cam, ab = report["counterfactual"], report["gradcam_on_cell"], report["abstention"]
        rows.append({
            "model": name,
            "sees": SEES.get(report.get("view"), "whole image"),
            "test accuracy": report["test_accuracy"],
            "counterfactual accuracy": cf["counterfactual_accuracy"],
            "drop (points)": round(cf["drop_points"], 1),
            "trained on twins": bool(report.get("trained_on_twins")),
            "cross-source accuracy": report.get("cross_source", {}).get("accuracy"),
            "cross-source, right when unflagged": report.get("cross_source", {}).get("accuracy_when_answered"),
            "Grad-CAM on cell": cam["mean_share_on_cell"],
            "cell area": cam["mean_cell_area_share"],
            "test flagged": ab["test_flagged"],
            "non-cell images flagged": ab.get("probes_flagged_as_not_a_cell"),
        })
    return rows


def uncertainty_rows(audits: dict[str, dict]) -> list[dict]:
    """Per model, the audit's three headline figures with their 95% intervals (None where not measured).

    The intervals say how much the figures could move with other images of
    the same labs: they cover the sampling of the test and cross-source
    images, not a retrained model (two runs of one recipe differ more).
    """
    rows = []
    for name, report in audits.items():
        cf, cross = report["counterfactual"], report.get("cross_source")
        test_low, test_high = accuracy_interval(report["test_accuracy"], report["test_images"])
        drop = drop_interval(cf)
        cross_interval = accuracy_interval(cross["accuracy"], cross["images"]) if cross else (None, None)
        rows.append({
            "model": name,
            "test accuracy": report["test_accuracy"], "test low": test_low, "test high": test_high,
            "drop (points)": cf["drop_points"],
            "drop low": drop[0] if drop else None, "drop high": drop[1] if drop else None,
            "cross-source accuracy": cross["accuracy"] if cross else None,
            "cross-source low": cross_interval[0], "cross-source high": cross_interval[1],
        })
    return rows


def counterfactual_class_rows(audits: dict[str, dict]) -> list[dict]:
    """Per class, each model's accuracy on the counterfactual twins (when the audit has it)."""
    rows = []
    for name in CLASS_NAMES:
        row = {"class": name, "photographed in": SOURCE_LAB[name], "shown as if from": other_lab(name)}
        for model, report in audits.items():
            entry = report["counterfactual"].get("per_class", {}).get(name)
            row[model] = entry["counterfactual_accuracy"] if entry else None
        rows.append(row)
    return rows


def proxy_and_real(report: dict, label: str = "seg_neutrophil") -> tuple[float, float] | None:
    """Accuracy on `label`'s counterfactual twins, and on the real cross-source cells.

    The twins of the Munich neutrophils are the audit's stand-in for the
    cross-source neutrophils; the gap says how much of another lab's look
    the counterfactual leaves out. None when either figure is missing.
    """
    entry = report["counterfactual"].get("per_class", {}).get(label)
    cross = report.get("cross_source")
    if entry is None or cross is None:
        return None
    return entry["counterfactual_accuracy"], cross["accuracy"]


def counterfactual_part_rows(audits: dict[str, dict]) -> list[dict]:
    """Per part of the other lab's look, each model's accuracy with only that part swapped."""
    rows = []
    for part in (*COUNTERFACTUAL_PARTS, "all together"):
        row = {"swapped": part}
        for model, report in audits.items():
            cf = report["counterfactual"]
            entry = cf.get("parts", {}).get(part)
            row[model] = cf["counterfactual_accuracy"] if part == "all together" else (
                entry["accuracy"] if entry else None)
        rows.append(row)
    return rows


def label_blind_baseline_rows(audits: dict[str, dict]) -> list[dict]:
    """The baselines as table rows, from the audit that has the most of them.

    They do not depend on the model, so any audit's are every audit's; an
    audit written before the shape baseline existed has the colour ones only.
    """
    report = max(audits.values(), key=lambda r: len(r["colour_baselines"]) + ("shape_baseline" in r))
    return baseline_rows(report)


def baseline_rows(report: dict) -> list[dict]:
    """The label-blind baselines of one audit (colour only, then shape only when audited), as table rows."""
    baselines = dict(report["colour_baselines"])
    if "shape_baseline" in report:
        baselines["cell_shape"] = report["shape_baseline"]
    return [{"baseline": name.replace("_", " "), "what it sees": entry["description"],
             "test accuracy": entry["test_accuracy"],
             "cross-source accuracy": entry.get("cross_source_accuracy")}
            for name, entry in baselines.items()]
