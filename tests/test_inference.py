"""Loading checks the card's checksum; predictions are probabilities in class order."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bloodcell.errors import BloodcellError
from bloodcell.inference import Classifier, available_models, resolve_model_dir, softmax
from conftest import draw_cell, encode


def test_softmax_with_temperature():
    logits = np.array([[2.0, 1.0, 0.0, 0.0, 0.0]])
    assert np.isclose(softmax(logits).sum(), 1.0)
    assert softmax(logits, 10.0).max() < softmax(logits, 1.0).max()


def test_available_models_and_resolution(tiny_models_dir, tmp_path):
    assert available_models(tiny_models_dir) == ["cnn"]
    assert resolve_model_dir(str(tiny_models_dir / "cnn")) == tiny_models_dir / "cnn"
    with pytest.raises(BloodcellError, match="not found"):
        resolve_model_dir("mobilenetv2", tmp_path)


def test_damaged_model_file_is_refused(tiny_models_dir, tmp_path):
    copy = tmp_path / "cnn"
    shutil.copytree(tiny_models_dir / "cnn", copy)
    with open(copy / "model.keras", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(BloodcellError, match="does not match the sha256"):
        Classifier.load(str(copy))
    (copy / "card.json").write_text("{not json")
    with pytest.raises(BloodcellError, match="damaged JSON"):
        Classifier.load(str(copy))


def test_predict_sources_keeps_going_after_a_bad_file(tiny_models_dir):
    classifier = Classifier.load("cnn", tiny_models_dir)
    sources = [encode(draw_cell("basophil")), b"", encode(draw_cell("monocyte"))]
    results = classifier.predict_sources(sources, ["a", "b", "c"])
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].error == "file is empty (0 bytes)"
    assert np.isclose(results[0].probabilities.sum(), 1.0, atol=1e-5)


def test_wrong_input_shape_is_rejected(tiny_models_dir):
    classifier = Classifier.load("cnn", tiny_models_dir)
    with pytest.raises(ValueError, match="expected images of shape"):
        classifier.predict_proba(np.zeros((1, 64, 64, 3), np.float32))
