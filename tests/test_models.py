"""Both architectures build with five outputs; MobileNetV2 is one flat graph."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from bloodcell.config import NUM_CLASSES
from bloodcell.errors import BloodcellError
from bloodcell.models import MODEL_SPECS, build_cnn, build_mobilenetv2, get_spec, is_flat, set_mobilenet_trainable


def test_cnn_builds_flat_with_five_outputs():
    model = build_cnn()
    assert model.output_shape == (None, NUM_CLASSES)
    assert is_flat(model)
    assert model.get_layer(MODEL_SPECS["cnn"].last_conv_layer) is not None
    assert model.get_layer("logits").output.shape[-1] == NUM_CLASSES
    assert model.count_params() * 4 < 5 * 1024 * 1024  # fits the 5 MB budget


def test_mobilenetv2_is_one_flat_graph():
    model = build_mobilenetv2(96, weights=None)
    assert model.output_shape == (None, NUM_CLASSES)
    assert is_flat(model)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.get_layer(MODEL_SPECS["mobilenetv2"].last_conv_layer) is not None
    probabilities = np.asarray(model(np.zeros((2, 96, 96, 3), np.float32)))
    assert probabilities.shape == (2, NUM_CLASSES)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_mobilenetv2_loads_local_imagenet_weights(imagenet_weights):
    model = build_mobilenetv2(96, weights=str(imagenet_weights))
    with h5py.File(imagenet_weights, "r") as handle:
        stored = []
        handle.visititems(lambda name, obj: stored.append(obj[()]) if "Conv1" in name and
                          isinstance(obj, h5py.Dataset) and obj.ndim == 4 else None)
    kernel = model.get_layer("Conv1").kernel.numpy()
    assert any(np.allclose(kernel, s) for s in stored)


def test_fine_tune_unfreezes_only_top_blocks():
    model = build_mobilenetv2(96, weights=None)
    set_mobilenet_trainable(model, fine_tune=False)
    assert [l.name for l in model.layers if l.trainable and l.weights] == ["logits"]
    set_mobilenet_trainable(model, fine_tune=True)
    trainable = {l.name for l in model.layers if l.trainable and l.weights}
    assert "block_16_project" in trainable and "Conv1" not in trainable
    assert not any(isinstance(model.get_layer(n), keras.layers.BatchNormalization) for n in trainable)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(BloodcellError, match="could not load ImageNet weights"):
        build_mobilenetv2(96, weights=str(tmp_path / "missing.h5"))


def test_unknown_model_name():
    with pytest.raises(BloodcellError, match="unknown model"):
        get_spec("resnet")
