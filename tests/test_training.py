"""A tiny end-to-end training run writes all four files; the model reloads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bloodcell.config import CLASS_NAMES
from bloodcell.data import load_manifest, sha256_file
from bloodcell.errors import BloodcellError
from bloodcell.inference import Classifier
from bloodcell.metrics import classification_metrics
from bloodcell.pipeline import make_dataset


def test_training_writes_model_history_metrics_and_card(tiny_models_dir):
    folder = tiny_models_dir / "cnn"
    for name in ("model.keras", "history.json", "metrics.json", "card.json"):
        assert (folder / name).is_file(), name
    history = json.loads((folder / "history.json").read_text())
    assert len(history) == 1
    assert set(history[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    card = json.loads((folder / "card.json").read_text())
    assert card["file_sha256"] == sha256_file(folder / "model.keras")
    assert card["input_size"] == 32 and card["classes"] == list(CLASS_NAMES)
    assert card["split"]["manifest_sha256"] == load_manifest(tiny_models_dir / "split.json").content_hash()
    for key in ("parameters", "hyperparameters", "epochs_run", "best_epoch", "training_seconds", "environment"):
        assert key in card
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "classes"}


def test_saved_model_reloads_and_predicts_the_same(tiny_models_dir, drawn_dataset):
    classifier = Classifier.load("cnn", tiny_models_dir)
    manifest = load_manifest(tiny_models_dir / "split.json")
    pairs = manifest.paths("test")
    labels = [CLASS_NAMES.index(label) for _, label in pairs]
    dataset = make_dataset([drawn_dataset / p for p, _ in pairs], labels, 32, batch_size=4)
    predicted = np.concatenate([classifier.predict_proba(x.numpy()) for x, _ in dataset]).argmax(1)
    recorded = json.loads((tiny_models_dir / "cnn" / "metrics.json").read_text())
    assert classification_metrics(labels, predicted)["confusion_matrix"] == recorded["confusion_matrix"]


def test_training_refuses_bad_epochs(drawn_dataset, tmp_path):
    from bloodcell.training import train

    with pytest.raises(BloodcellError, match="at least 1"):
        train("cnn", drawn_dataset, tmp_path, epochs=0)


def test_training_stores_a_fitted_temperature(tiny_models_dir):
    card = json.loads((tiny_models_dir / "cnn" / "card.json").read_text())
    calibration = card["calibration"]
    assert calibration["fitted_on"] == "validation split"
    assert 0.05 <= calibration["temperature"] <= 20
    assert calibration["val"]["nll_after"] <= calibration["val"]["nll_before"] + 0.05
    assert Classifier.load("cnn", tiny_models_dir).temperature == calibration["temperature"]
