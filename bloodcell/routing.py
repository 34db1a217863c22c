"""Two shipped models as one: the first answers, the second where the first is unsure of a familiar cell.

The two shipped pairs (bloodcell.pairing) are each best at one thing:
cellagreepair carries over to other labs' photos, cellpair fits the two
training labs closest. A cascade lets the first (the primary) answer, and
hands the image to the second (the fallback) only where the primary's
calibrated confidence is below the flag threshold *and* its outlier check
finds the cell like the training images:

    answer = fallback(image) if p_primary < min_confidence and not outlier_primary(image)
             else primary(image)

On a cell unlike the training images the fallback has no claim to know
better (it learned the training labs' look), so the primary keeps the
answer there. The cascade's probabilities are the answering model's
calibrated ones, its Grad-CAM is the answering model's, and its own
temperature and outlier check are fitted like any model's on top (the
outlier check on the primary's features, which every image has). Nothing is
trained; its folder holds a card naming its two models, found beside it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from bloodcell.abstention import DEFAULT_MIN_CONFIDENCE
from bloodcell.config import check_model_name
from bloodcell.errors import BloodcellError
from bloodcell.inference import (CARD_FILE, HISTORY_FILE, MODEL_FILE, Classifier, Forward,
                                 load_outlier_detector, resolve_model_dir, softmax)
from bloodcell.runtime import AUTO


ROLES = ("primary", "fallback")
# Card fields both models must share for one input to serve both.
SHARED_FIELDS = ("classes", "input_size", "view", "test_time_augmentation", "split")
_EPSILON = 1e-12


def model_sha256(card: dict) -> dict | str | None:
    """What names a model's weights: its file's checksum, or a pair's members' checksums."""
    from bloodcell.pairing import members_sha256

    return members_sha256(card["pair"]) if card.get("pair") else card.get("file_sha256")


def networks_of(*models: Classifier) -> tuple[Classifier, ...]:
    """Every network the models run, each once: a pair's members, or the model itself."""
    networks: dict[str, Classifier] = {}
    for model in models:
        for network in getattr(model, "members", (model,)):
            networks.setdefault(network.name, network)
    return tuple(networks.values())


def route_mask(probabilities: np.ndarray, ood_scores: np.ndarray | None, ood_threshold: float | None,
               min_confidence: float) -> np.ndarray:
    """Which images the fallback answers: the primary is unsure and finds them like its training images."""
    unsure = np.asarray(probabilities).max(axis=1) < min_confidence
    if ood_scores is None or ood_threshold is None:
        return unsure
    return unsure & ~(np.asarray(ood_scores) > ood_threshold)


class RoutedClassifier(Classifier):
    """A Classifier whose logits are the answering model's calibrated log-probabilities."""

    single_network = False

    def __init__(self, card: dict, primary: Classifier, fallback: Classifier, model_dir: Path | None = None):
        for field in SHARED_FIELDS[:-1]:  # the split is checked when the cascade is built
            if primary.card.get(field) != fallback.card.get(field):
                raise BloodcellError(f"{primary.name} and {fallback.name} differ in {field}, "
                                     "so one input cannot serve both")
        self.primary, self.fallback = primary, fallback
        self.min_confidence = float(card.get("route", {}).get("min_confidence", DEFAULT_MIN_CONFIDENCE))
        super().__init__(None, {**card, "view": primary.view, "last_conv_layer": primary.layer_name}, model_dir,
                         runner=primary.runner)

    @property
    def view_description(self) -> str | None:
        return self.primary.view_description

    @property
    def members(self) -> tuple[Classifier, ...]:
        """Every network the cascade may run, each once: the primary's, then the fallback's."""
        return networks_of(self.primary, self.fallback)

    @property
    def model(self):
        raise BloodcellError(f"{self.name} hands each image to {self.primary.name} or {self.fallback.name}; "
                             "Grad-CAM explains the one that answered, the other heatmap methods explain one "
                             "network: choose one of its models for them")

    def _forward(self, images: np.ndarray) -> Forward:
        first = self.primary._forward(images)
        probabilities = softmax(first.logits, self.primary.temperature)
        routed = route_mask(probabilities, self.primary.ood_scores(first.features),
                            None if self.primary.outlier_detector is None else self.primary.outlier_detector.threshold,
                            self.min_confidence)
        logits = np.log(np.maximum(probabilities, _EPSILON)).astype(np.float32)
        # Each answer's maps are the answering model's own, scaled by its temperature as its logits
        # are (Grad-CAM keeps only their positive part and shape).
        class_maps = first.class_maps / self.primary.temperature
        answered_by = np.full(len(images), self.primary.name, dtype=object)
        if routed.any():
            second = self.fallback._forward(images[routed])
            logits[routed] = np.log(np.maximum(softmax(second.logits, self.fallback.temperature), _EPSILON))
            if second.class_maps.shape[0] != class_maps.shape[0]:
                raise BloodcellError(f"{self.primary.name} and {self.fallback.name} give different numbers of "
                                     "test-time views")
            class_maps[:, routed] = second.class_maps / self.fallback.temperature
            answered_by[routed] = self.fallback.name
        return Forward(features=first.features, logits=logits, class_maps=class_maps.astype(np.float32),
                       answered_by=answered_by)


def route_command(card: dict) -> str:
    """The `route` command that builds the cascade on `card`, as typed."""
    route = card.get("route", {})
    return (f"python -m bloodcell route --primary {route['primary']['model']} "
            f"--fallback {route['fallback']['model']} --name {card['name']}")


def route_words(card: dict) -> str:
    """What the cascade does, in words (the card, the CLI and the pages)."""
    route = card["route"]
    primary, fallback = route["primary"]["model"], route["fallback"]["model"]
    return (f"{primary} answers; where it is less than {route.get('min_confidence', DEFAULT_MIN_CONFIDENCE):.0%} "
            f"sure of a cell it finds like the training images, {fallback} answers instead")


def load_route(folder: Path, card: dict, verify_checksum: bool = True, runtime: str = AUTO,
               load_member: Callable[[str], Classifier] | None = None) -> RoutedClassifier:
    """The cascade in `folder`, its two models loaded from beside it (or by `load_member`) and checked
    against the card."""
    models = []
    for role in ROLES:
        entry = card["route"][role]
        try:
            model = load_member(entry["model"]) if load_member else Classifier.load(
                str(folder.parent / entry["model"]), verify_checksum=verify_checksum, runtime=runtime)
        except BloodcellError as exc:
            raise BloodcellError(f"{folder.name} needs its {role} model {entry['model']}: {exc}") from None
        # The cascade's temperature and outlier check were fitted on these models as they
        # were; a retrained or recalibrated one voids them.
        if model_sha256(model.card) != entry.get("sha256") or \
                abs(model.temperature - entry.get("temperature", model.temperature)) > 1e-6:
            raise BloodcellError(
                f"{folder.name} was built from {entry['model']} as it was before it was retrained, rebuilt or "
                f"recalibrated; build it again: {route_command({**card, 'name': folder.name})}")
        models.append(model)
    routed = RoutedClassifier(card, *models, model_dir=folder)
    routed.outlier_detector = load_outlier_detector(folder, card, verify_checksum)
    return routed


def make_route(primary: str, fallback: str, name: str, data_dir: Path, models_dir: Path) -> Path:
    """Write the cascade's folder beside its two models, then its test metrics, temperature and outlier check."""
    from bloodcell.audit import trained_on_twins
    from bloodcell.data import load_manifest, manifest_path
    from bloodcell.pairing import report_like_training
    from bloodcell.training import remove_stale_results

    models_dir, data_dir = Path(models_dir), Path(data_dir)
    check_model_name(name)
    if primary == fallback:
        raise BloodcellError("a cascade needs two different models")
    folders = [resolve_model_dir(model, models_dir) for model in (primary, fallback)]
    models = [Classifier.load(str(folder)) for folder in folders]
    for model in models:
        if model.card.get("route"):
            raise BloodcellError(f"{model.name} is itself a cascade; a cascade's models are trained models or pairs")
    if models[0].outlier_detector is None:
        raise BloodcellError(f"{primary} has no outlier check, which the cascade needs to tell a familiar cell from "
                             "an unfamiliar one")
    # Checked before anything is written: a half-made folder would be listed as a model.
    for field in SHARED_FIELDS:
        if models[0].card.get(field) != models[1].card.get(field):
            raise BloodcellError(f"{primary} and {fallback} differ in {field}, so one input cannot serve both")
    for folder in folders:
        if folder.parent.resolve() != models_dir.resolve():
            raise BloodcellError(f"{folder} is not in {models_dir}: a cascade finds its models beside it")
    out = models_dir / name
    if out.resolve() in {folder.resolve() for folder in folders} or (out / MODEL_FILE).is_file():
        raise BloodcellError(f"{out} holds a trained model, which the cascade would overwrite; give it another --name")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_results(out)
    first = models[0].card
    card = {
        "name": name,
        "classes": first.get("classes"),
        "input_size": first.get("input_size"),
        "test_time_augmentation": first.get("test_time_augmentation"),
        "split": first.get("split"),
        "last_conv_layer": first.get("last_conv_layer"),
        "view": first.get("view"),
        "input": first.get("input"),
        "route": {
            "method": "the fallback answers where the primary's calibrated confidence is below min_confidence "
                      "and its outlier check passes the image; the primary answers everywhere else "
                      "(bloodcell.routing)",
            "min_confidence": DEFAULT_MIN_CONFIDENCE,
            **{role: {"model": folder.name, "sha256": model_sha256(model.card), "temperature": model.temperature,
                      "trained_on_twins": trained_on_twins(model.card)}
               for role, folder, model in zip(ROLES, folders, models)},
        },
        "parameters": sum(int(network.card.get("parameters") or 0) for network in networks_of(*models)),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    card["description"] = f"{route_words(card)}."
    (out / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n")
    (out / HISTORY_FILE).write_text("[]\n")  # no training of its own: its models' pages have the curves
    manifest = load_manifest(manifest_path(models_dir))
    report_like_training(load_route(out, card), out, card, manifest, data_dir)
    return out
