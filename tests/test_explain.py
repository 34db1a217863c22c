"""Heatmaps: the compiled Grad-CAM matches tf-keras-vis; every method runs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bloodcell.config import CLASS_NAMES
from bloodcell.explain import METHODS, Explainer, colormap, overlay
from bloodcell.inference import Classifier
from conftest import draw_cell


@pytest.fixture(scope="module", params=["cnn", "mobilenetv2"])
def explainer(request, shipped_models):
    return Explainer(Classifier.load(request.param, shipped_models))


def real_input(classifier, real_data_dir, label: str = "monocyte"):
    path = sorted((real_data_dir / label).iterdir())[0]
    return classifier.prepare(path)


@pytest.mark.parametrize("label", CLASS_NAMES)
def test_compiled_gradcam_matches_tf_keras_vis(explainer, real_data, label):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classifier = explainer.classifier
    model_input = real_input(classifier, real_data, label)
    ours = explainer.gradcam(model_input)
    reference = Gradcam(classifier.model, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore([ours.class_index]), model_input[None], penultimate_layer=explainer.layer_name,
        seek_penultimate_conv_layer=False,
    )[0]
    assert ours.heatmap.shape == reference.shape
    correlation = np.corrcoef(ours.heatmap.ravel(), reference.ravel())[0, 1]
    assert correlation >= 0.99, correlation
    assert np.allclose(ours.probabilities, classifier.predict_proba(model_input[None])[0], atol=1e-5)


def test_explain_chosen_class_differs_from_predicted(explainer, real_data):
    model_input = real_input(explainer.classifier, real_data)
    predicted = explainer.gradcam(model_input)
    other = (predicted.class_index + 1) % 5
    chosen = explainer.gradcam(model_input, other)
    assert chosen.class_index == other


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_normalised_map(shipped_models, method):
    classifier = Classifier.load("cnn", shipped_models)
    explainer = Explainer(classifier)
    model_input = classifier.prepare(_png_bytes(draw_cell("basophil", size=150)))
    explanation = explainer.explain(model_input, method)
    size = classifier.input_size
    assert explanation.heatmap.shape == (size, size)
    assert 0.0 <= explanation.heatmap.min() and explanation.heatmap.max() <= 1.0
    assert explanation.method == method
    assert np.isclose(explanation.probabilities.sum(), 1.0, atol=1e-4)


def _png_bytes(image: Image.Image) -> bytes:
    from conftest import encode

    return encode(image, "PNG")


def test_unknown_method_is_rejected(shipped_models):
    explainer = Explainer(Classifier.load("cnn", shipped_models))
    with pytest.raises(ValueError, match="unknown explanation method"):
        explainer.explain(np.zeros((128, 128, 3), np.float32), "LIME")


def test_overlay_keeps_aspect_and_blends():
    image = Image.new("RGB", (300, 200), (255, 255, 255))
    heatmap = np.zeros((64, 64), np.float32)
    heatmap[:, 32:] = 1.0
    blended = overlay(image, heatmap, opacity=1.0)
    assert blended.size == (300, 200)
    pixels = np.asarray(blended)
    assert tuple(pixels[100, 10]) == tuple(colormap(np.array(0.0)))  # cold side: blue
    assert tuple(pixels[100, 290]) == tuple(colormap(np.array(1.0)))  # hot side: red
    assert np.array_equal(np.asarray(overlay(image, heatmap, opacity=0.0)), np.asarray(image))


def test_upsample_matches_scipy_zoom():
    from scipy.ndimage import zoom

    from bloodcell.explain import upsample

    cam = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    assert np.allclose(upsample(cam, 224), zoom(cam, 32, order=1), atol=1e-5)


def test_overlay_with_a_box_colours_only_that_square():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    heat = np.ones((32, 32), np.float32)
    result = np.asarray(overlay(image, heat, 0.5, box=(0.5, 0.0, 1.0, 1.0)))
    assert (result[:, :100] == 255).all()  # left half untouched
    assert (result[:, 100:] != 255).any(axis=-1).all()  # right half tinted


def test_cell_view_gradcam_is_tf_keras_vis_averaged_over_the_mirror_views(shipped_models, real_data):
    """With test-time flips, the heatmap is the mean of the four views' Grad-CAMs, flipped back."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    # A cell-view model of one network: tf-keras-vis explains one network (a
    # pair's Grad-CAM is checked through its parts in test_pairing).
    classifier = Classifier.load("cellfocus", shipped_models)
    assert classifier.test_time_flips
    explainer = Explainer(classifier)
    model_input = real_input(classifier, real_data, "seg_neutrophil")
    ours = explainer.gradcam(model_input)
    reference = Gradcam(classifier.model, model_modifier=ReplaceToLinear(), clone=True)
    views = [model_input, model_input[:, ::-1], model_input[::-1], model_input[::-1, ::-1]]
    maps = [reference(CategoricalScore([ours.class_index]), np.ascontiguousarray(v)[None],
                      penultimate_layer=explainer.layer_name, seek_penultimate_conv_layer=False)[0]
            for v in views]
    unflipped = [maps[0], maps[1][:, ::-1], maps[2][::-1], maps[3][::-1, ::-1]]
    correlation = np.corrcoef(ours.heatmap.ravel(), np.mean(unflipped, axis=0).ravel())[0, 1]
    assert correlation >= 0.97, correlation
