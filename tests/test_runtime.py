"""The LiteRT copy of a model gives the Keras model's numbers, and is refused when it should be."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bloodcell.config import CLASS_NAMES, MODEL_NAMES
from bloodcell.errors import BloodcellError
from bloodcell.explain import Explainer
from bloodcell.inference import Classifier
from bloodcell.runtime import KERAS, LITE, LITE_FILE
from conftest import draw_cell


def test_training_writes_a_lite_copy_recorded_in_the_card(tiny_models_dir):
    card = json.loads((tiny_models_dir / "cnn" / "card.json").read_text())
    assert card["lite"]["file"] == LITE_FILE
    assert card["lite"]["source_sha256"] == card["file_sha256"]
    assert (tiny_models_dir / "cnn" / LITE_FILE).stat().st_size == card["lite"]["size_bytes"]
    assert Classifier.load(str(tiny_models_dir / "cnn")).runtime == LITE


def test_tiny_model_gives_the_same_answer_in_both_runtimes(tiny_models_dir):
    keras_model = Classifier.load(str(tiny_models_dir / "cnn"), runtime=KERAS)
    lite_model = Classifier.load(str(tiny_models_dir / "cnn"), runtime=LITE)
    images = np.stack([np.asarray(draw_cell(label, 32, seed), np.float32)
                       for seed, label in enumerate(CLASS_NAMES)])
    np.testing.assert_allclose(lite_model.predict_proba(images), keras_model.predict_proba(images), atol=1e-5)
    np.testing.assert_allclose(Explainer(lite_model).gradcam(images[0]).heatmap,
                               Explainer(keras_model).gradcam(images[0]).heatmap, atol=1e-3)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_models_agree_across_runtimes_on_real_cells(name, shipped_models, real_data):
    """Probabilities, heatmaps and the out-of-distribution features, one real cell per class."""
    keras_model = Classifier.load(name, shipped_models, runtime=KERAS)
    lite_model = Classifier.load(name, shipped_models, runtime=LITE)
    files = [sorted((real_data / label).glob("*.jpg"))[7] for label in CLASS_NAMES]
    images = np.stack([keras_model.prepare(path) for path in files])
    expected, got = keras_model.forward(images), lite_model.forward(images)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-3)
    np.testing.assert_allclose(got.features, expected.features, atol=1e-3)
    assert (got.logits.argmax(1) == expected.logits.argmax(1)).all()
    for image in images:
        heat_keras = Explainer(keras_model).gradcam(image).heatmap
        heat_lite = Explainer(lite_model).gradcam(image).heatmap
        assert np.abs(heat_keras - heat_lite).max() < 1e-2


def _copy(tiny_models_dir, tmp_path):
    copy = tmp_path / "cnn"
    shutil.copytree(tiny_models_dir / "cnn", copy)
    return copy


def test_damaged_lite_file_is_refused(tiny_models_dir, tmp_path):
    copy = _copy(tiny_models_dir, tmp_path)
    with open(copy / LITE_FILE, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(BloodcellError, match="does not match the sha256"):
        Classifier.load(str(copy))
    # The Keras path does not read the lite file at all.
    assert Classifier.load(str(copy), runtime=KERAS).runtime == KERAS


def test_missing_or_stale_lite_file_falls_back_to_keras(tiny_models_dir, tmp_path):
    copy = _copy(tiny_models_dir, tmp_path)
    (copy / LITE_FILE).rename(copy / "elsewhere.tflite")
    assert Classifier.load(str(copy)).runtime == KERAS
    (copy / "elsewhere.tflite").rename(copy / LITE_FILE)
    card = json.loads((copy / "card.json").read_text())
    card["lite"]["source_sha256"] = "0" * 64  # converted from some other model.keras
    (copy / "card.json").write_text(json.dumps(card))
    assert Classifier.load(str(copy)).runtime == KERAS
    with pytest.raises(BloodcellError, match="cannot run in LiteRT"):
        Classifier.load(str(copy), runtime=LITE)
    del card["lite"]
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(BloodcellError, match="bloodcell export"):
        Classifier.load(str(copy), runtime=LITE)
    with pytest.raises(BloodcellError, match="unknown runtime"):
        Classifier.load(str(copy), runtime="onnx")


def test_export_command_writes_a_fresh_lite_copy(tiny_models_dir, tmp_path):
    from bloodcell.cli import main

    copy = _copy(tiny_models_dir, tmp_path)
    (copy / LITE_FILE).unlink()
    assert main(["-q", "export", "--model", str(copy)]) == 0
    assert Classifier.load(str(copy)).runtime == LITE


def test_prediction_and_gradcam_do_not_import_tensorflow(tiny_models_dir):
    """The lean path of the app: a fresh process that never loads TensorFlow."""
    script = (
        "import sys, numpy as np\n"
        "from bloodcell.service import ModelService\n"
        f"service = ModelService.load({str(tiny_models_dir / 'cnn')!r})\n"
        "from PIL import Image\n"
        "result = service.analyse('cell.png', Image.new('RGB', (64, 64), (200, 120, 200)))\n"
        "assert result.ok and result.heatmap is not None, result.error\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_cli_predict_runs_in_litert_with_a_clean_stderr(tiny_models_dir, tmp_path):
    image = tmp_path / "cell.png"
    draw_cell("monocyte", 32).save(image)
    done = subprocess.run([sys.executable, "-m", "bloodcell", "-q", "predict", "--model",
                           str(tiny_models_dir / "cnn"), str(image)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("file,verdict,reason,predicted_class")
    assert done.stderr == ""  # no TensorFlow or LiteRT start-up lines


@pytest.mark.parametrize("runtime", [KERAS, LITE])
def test_empty_and_multi_batch_inputs_keep_their_shapes(tiny_models_dir, runtime):
    classifier = Classifier.load(str(tiny_models_dir / "cnn"), runtime=runtime)
    empty = classifier.forward(np.zeros((0, 32, 32, 3), np.float32))
    assert empty.logits.shape == (0, len(CLASS_NAMES)) and empty.features.shape[0] == 0
    assert empty.class_maps.shape[:2] == (1, 0)
    many = np.random.default_rng(0).uniform(0, 255, (40, 32, 32, 3)).astype(np.float32)  # two batches
    result = classifier.forward(many)
    assert result.logits.shape == (40, len(CLASS_NAMES)) and result.class_maps.shape[1] == 40
    np.testing.assert_allclose(result.logits[35], classifier.forward(many[35:36]).logits[0], atol=1e-5)
