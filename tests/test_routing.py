"""A cascade gives its primary model's answer, and its fallback's where the primary is unsure of a familiar cell."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bloodcell.cli import main
from bloodcell.errors import BloodcellError
from bloodcell.explain import GRADCAM, SMOOTHGRAD, Explainer
from bloodcell.inference import Classifier, available_models, softmax
from bloodcell.routing import RoutedClassifier, route_mask

FALLBACK_TEMPERATURE = 3.0


def test_only_unsure_answers_on_familiar_cells_are_handed_over():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4], [0.95, 0.05]])
    scores = np.array([0.0, 0.0, 5.0, 5.0])  # the last two are unlike the training images
    np.testing.assert_array_equal(route_mask(probabilities, scores, 1.0, 0.7), [False, True, False, False])
    # Without an outlier check every unsure answer is handed over.
    np.testing.assert_array_equal(route_mask(probabilities, None, None, 0.7), [False, True, True, False])


@pytest.fixture(scope="module")
def route_dir(tmp_path_factory, tiny_models_dir, drawn_dataset):
    """The tiny cnn, a copy of it whose temperature differs (as 'other'), and their cascade built by the CLI."""
    models = tmp_path_factory.mktemp("route-models")
    shutil.copytree(tiny_models_dir / "cnn", models / "cnn")
    shutil.copytree(tiny_models_dir / "cnn", models / "other")
    card_path = models / "other" / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "name": "other",
                                     "calibration": {**card["calibration"], "temperature": FALLBACK_TEMPERATURE}}))
    shutil.copyfile(tiny_models_dir / "split.json", models / "split.json")
    assert main(["-q", "route", "--primary", "cnn", "--fallback", "other", "--name", "cascade",
                 "--data", str(drawn_dataset), "--out", str(models)]) == 0
    return models


def inputs(classifier: Classifier, drawn_dataset, n: int = 8) -> np.ndarray:
    return np.stack([classifier.prepare(path) for path in sorted(drawn_dataset.glob("*/*.png"))[:n]])


def with_threshold(route_dir, min_confidence: float) -> RoutedClassifier:
    """The built cascade, handing over below `min_confidence` instead of its card's."""
    cascade = Classifier.load("cascade", route_dir)
    card = {**cascade.card, "route": {**cascade.card["route"], "min_confidence": min_confidence}}
    routed = RoutedClassifier(card, cascade.primary, cascade.fallback, route_dir / "cascade")
    routed.outlier_detector = cascade.outlier_detector
    return routed


def test_a_cascade_is_listed_and_reported_like_a_model(route_dir, capsys):
    assert available_models(route_dir) == ["cascade", "cnn", "other"]
    card = json.loads((route_dir / "cascade" / "card.json").read_text())
    assert card["route"]["primary"]["model"] == "cnn" and card["route"]["fallback"]["model"] == "other"
    assert card["route"]["fallback"]["temperature"] == FALLBACK_TEMPERATURE
    assert {"calibration", "ood", "test_metrics", "description"} <= set(card)
    assert "cnn answers; where it is less than 70% sure" in card["description"]


def test_the_answer_is_the_primary_s_unless_it_is_unsure_of_a_familiar_cell(route_dir, drawn_dataset):
    primary = Classifier.load("cnn", route_dir)
    x = inputs(primary, drawn_dataset)
    alone = primary.forward(x)
    p_primary = softmax(alone.logits, primary.temperature)
    p_fallback = softmax(alone.logits, FALLBACK_TEMPERATURE)  # the same network, another temperature

    never = with_threshold(route_dir, 0.0).forward(x)
    np.testing.assert_allclose(np.exp(never.logits), p_primary, rtol=1e-5)
    assert list(never.answered_by) == ["cnn"] * len(x)
    np.testing.assert_allclose(never.features, alone.features)

    always = with_threshold(route_dir, 1.01)
    familiar = ~primary.outlier_detector.is_outlier(alone.features)
    assert familiar.any(), "the drawn cells should look like the tiny model's training images"
    result = always.forward(x)
    np.testing.assert_array_equal(result.answered_by == "other", familiar)
    np.testing.assert_allclose(np.exp(result.logits), np.where(familiar[:, None], p_fallback, p_primary), rtol=1e-5)
    # Each answer's maps are its model's, over its temperature.
    temperatures = np.where(familiar, FALLBACK_TEMPERATURE, primary.temperature)
    np.testing.assert_allclose(result.class_maps, alone.class_maps / temperatures[None, :, None, None, None],
                               rtol=1e-5, atol=1e-6)

    # An outlier check that finds every image unfamiliar keeps every answer the primary's.
    always.primary.outlier_detector.threshold, saved = -np.inf, always.primary.outlier_detector.threshold
    try:
        assert list(always.forward(x).answered_by) == ["cnn"] * len(x)
    finally:
        always.primary.outlier_detector.threshold = saved


def test_predictions_say_which_model_answered(route_dir, drawn_dataset):
    paths = sorted(drawn_dataset.glob("*/*.png"))[:4]
    predictions = with_threshold(route_dir, 1.01).predict_sources(paths + [drawn_dataset / "missing.png"])
    assert {p.answered_by for p in predictions[:4]} <= {"cnn", "other"}
    assert predictions[4].error and predictions[4].answered_by is None
    assert Classifier.load("cnn", route_dir).predict_sources(paths[:1])[0].answered_by is None


def test_a_cascade_explains_with_the_answering_model_s_grad_cam(route_dir, drawn_dataset):
    cascade = Classifier.load("cascade", route_dir)
    x = inputs(cascade, drawn_dataset, 1)[0]
    explanation = Explainer(cascade).explain(x, GRADCAM)
    assert explanation.heatmap.shape == (cascade.input_size, cascade.input_size)
    assert np.isfinite(explanation.heatmap).all()
    with pytest.raises(BloodcellError, match="choose one of its models"):
        Explainer(cascade).explain(x, SMOOTHGRAD)


def test_a_changed_or_missing_model_is_named(route_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(route_dir, models)
    card_path = models / "other" / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "calibration": {**card["calibration"], "temperature": 1.0}}))
    with pytest.raises(BloodcellError, match="built from other as it was before.*python -m bloodcell route "
                                             "--primary cnn --fallback other --name cascade"):
        Classifier.load("cascade", models)
    shutil.rmtree(models / "other")
    with pytest.raises(BloodcellError, match="needs its fallback model other"):
        Classifier.load("cascade", models)


def test_a_cascade_refuses_to_overwrite_a_model_or_to_nest(route_dir, drawn_dataset, capsys):
    code = main(["-q", "route", "--primary", "cnn", "--fallback", "other", "--name", "cnn",
                 "--data", str(drawn_dataset), "--out", str(route_dir)])
    assert code != 0 and "holds a trained model" in capsys.readouterr().err
    code = main(["-q", "route", "--primary", "cascade", "--fallback", "cnn", "--name", "nested",
                 "--data", str(drawn_dataset), "--out", str(route_dir)])
    assert code != 0 and "is itself a cascade" in capsys.readouterr().err
    assert not (route_dir / "nested").exists()


def test_a_cascade_has_no_network_to_start_training_from(route_dir):
    import keras

    from bloodcell.training import warm_start

    with pytest.raises(BloodcellError, match="a cascade has no network of its own"):
        warm_start(keras.Sequential(), route_dir / "cascade")


def test_a_cascade_with_a_model_trained_on_twins_counts_as_trained_on_twins():
    from bloodcell.audit import trained_on_twins

    entry = {"model": "cellpair", "sha256": {}, "temperature": 1.0, "trained_on_twins": True}
    assert trained_on_twins({"route": {"primary": entry, "fallback": {**entry, "trained_on_twins": False}}})
    assert not trained_on_twins({"route": {"primary": {**entry, "trained_on_twins": False},
                                           "fallback": {**entry, "trained_on_twins": False}}})


def test_a_missing_shipped_cascade_says_how_to_build_it(tmp_path):
    with pytest.raises(BloodcellError, match="python -m bloodcell route --primary cellagreepair --fallback cellpair "
                                             "--name cellroute"):
        Classifier.load("cellroute", tmp_path)


def test_shipped_cascades_are_built_as_their_recipes_say(shipped_models):
    from bloodcell.abstention import DEFAULT_MIN_CONFIDENCE
    from bloodcell.config import ROUTED_MODELS

    for name, recipe in ROUTED_MODELS.items():
        route = json.loads((shipped_models / name / "card.json").read_text())["route"]
        assert (route["primary"]["model"], route["fallback"]["model"]) == recipe, name
        assert route["min_confidence"] == DEFAULT_MIN_CONFIDENCE, name
