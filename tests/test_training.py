"""A tiny end-to-end training run writes all four files; the model reloads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bloodcell.config import CLASS_NAMES
from bloodcell.data import load_manifest, sha256_file
from bloodcell.errors import BloodcellError
from bloodcell.inference import Classifier
from bloodcell.metrics import classification_metrics
from bloodcell.models import MODEL_SPECS
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


def test_retraining_removes_results_of_the_model_it_replaces(drawn_dataset, tmp_path):
    from bloodcell.training import train

    (tmp_path / "cnn").mkdir()
    for stale in ("audit.json", "cross_source.json"):
        (tmp_path / "cnn" / stale).write_text("{}")
    train("cnn", drawn_dataset, tmp_path, epochs=1, image_size=32, batch_size=8, verbose=0)
    assert (tmp_path / "cnn" / "model.keras").is_file()
    assert not (tmp_path / "cnn" / "audit.json").exists() and not (tmp_path / "cnn" / "cross_source.json").exists()


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


def _train_tiny(name: str, models_dir: Path, drawn_dataset: Path, imagenet_weights: Path) -> Path:
    """Model `name` trained for one epoch at 32 pixels on the drawn dataset."""
    from bloodcell.training import train

    train(name, drawn_dataset, models_dir, epochs=1, image_size=32, batch_size=8, verbose=0,
          base_weights=str(imagenet_weights))
    return models_dir


@pytest.fixture(scope="module")
def tiny_cell_models_dir(tmp_path_factory, drawn_dataset, imagenet_weights):
    """A cellfocus model (cell view)."""
    return _train_tiny("cellfocus", tmp_path_factory.mktemp("cell-models"), drawn_dataset, imagenet_weights)


def test_cell_view_model_records_its_view_and_abstention(tiny_cell_models_dir):
    folder = tiny_cell_models_dir / "cellfocus"
    card = json.loads((folder / "card.json").read_text())
    assert card["view"] == "cell"
    assert "colour" in card["hyperparameters"]["augmentation"]
    assert card["ood"]["sha256"] == sha256_file(folder / "ood.npz")
    classifier = Classifier.load("cellfocus", tiny_cell_models_dir)
    assert classifier.view == "cell" and classifier.outlier_detector is not None


def test_a_seeded_run_trains_the_same_weights_again(tiny_cell_models_dir, drawn_dataset, imagenet_weights, tmp_path):
    """Same seed, same data, same recipe: the same network, down to the last bit."""
    import keras

    again = _train_tiny("cellfocus", tmp_path, drawn_dataset, imagenet_weights)
    first, second = (keras.saving.load_model(folder / "cellfocus" / "model.keras", compile=False).get_weights()
                     for folder in (tiny_cell_models_dir, again))
    for before, after in zip(first, second, strict=True):
        np.testing.assert_array_equal(before, after)


def test_cell_view_is_the_same_in_training_and_prediction(tiny_cell_models_dir, drawn_dataset):
    """The pipeline and the CLI/app path give one image the same input, so the same answer."""
    classifier = Classifier.load("cellfocus", tiny_cell_models_dir)
    files = sorted((drawn_dataset / "monocyte").iterdir())[:4]
    dataset = make_dataset(files, [2] * len(files), 32, batch_size=len(files), view="cell")
    from_pipeline = classifier.predict_proba(next(iter(dataset))[0].numpy())
    from_files = np.stack([r.probabilities for r in classifier.predict_sources(files)])
    np.testing.assert_allclose(from_pipeline, from_files, atol=1e-5)


def test_tampered_outlier_file_is_refused(tiny_cell_models_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_cell_models_dir / "cellfocus", tmp_path / "cellfocus")
    (tmp_path / "cellfocus" / "ood.npz").write_bytes(b"replaced")
    with pytest.raises(BloodcellError, match="sha256"):
        Classifier.load(str(tmp_path / "cellfocus"))


def test_test_time_flips_make_the_answer_mirror_invariant(tiny_cell_models_dir, drawn_dataset):
    """Four mirror views are averaged, so an image and its mirror get one answer and mirrored heatmaps."""
    from bloodcell.explain import Explainer

    classifier = Classifier.load("cellfocus", tiny_cell_models_dir)
    assert classifier.test_time_flips
    image = classifier.prepare(sorted((drawn_dataset / "basophil").iterdir())[0])
    mirrored = np.ascontiguousarray(image[:, ::-1])
    np.testing.assert_allclose(classifier.predict_proba(image[None]), classifier.predict_proba(mirrored[None]),
                               atol=1e-5)
    explainer = Explainer(classifier)
    direct, flipped = explainer.gradcam(image), explainer.gradcam(mirrored)
    np.testing.assert_allclose(direct.probabilities, classifier.predict_proba(image[None])[0], atol=1e-5)
    np.testing.assert_allclose(direct.heatmap[:, ::-1], flipped.heatmap, atol=1e-4)


def test_test_time_focus_averages_the_mirror_views_at_both_labs_detail_levels(tiny_cell_models_dir, drawn_dataset):
    """Eight views: the four mirrors of the view at each lab's typical detail; maps from all eight."""
    from bloodcell.cellview import LAB_VIEW_DETAIL, focus_to
    from bloodcell.explain import Explainer
    from bloodcell.inference import TTA_FLIPS_FOCUS

    flips = Classifier.load("cellfocus", tiny_cell_models_dir)
    focused = Classifier.load("cellfocus", tiny_cell_models_dir)
    focused.test_time_augmentation = TTA_FLIPS_FOCUS
    images = np.stack([flips.prepare(path) for path in sorted((drawn_dataset / "basophil").iterdir())[:3]])
    result = focused.forward(images)
    assert result.class_maps.shape[:2] == (8, 3)
    expected = np.mean([flips.logits(focus_to(images, level)) for level in LAB_VIEW_DETAIL.values()], axis=0)
    np.testing.assert_allclose(result.logits, expected, atol=1e-4)
    assert not np.allclose(result.logits, flips.logits(images), atol=1e-4)
    # Still one answer for an image and its mirror, and Grad-CAM explains that answer.
    mirrored = np.ascontiguousarray(images[:, ::-1])
    np.testing.assert_allclose(focused.predict_proba(images), focused.predict_proba(mirrored), atol=1e-5)
    explanation = Explainer(focused).gradcam(images[0])
    np.testing.assert_allclose(explanation.probabilities, focused.predict_proba(images[:1])[0], atol=1e-5)


def test_unknown_test_time_augmentation_is_refused(tiny_cell_models_dir, tmp_path):
    import shutil

    copy = tmp_path / "cellfocus"
    shutil.copytree(tiny_cell_models_dir / "cellfocus", copy)
    card = json.loads((copy / "card.json").read_text())
    (copy / "card.json").write_text(json.dumps({**card, "test_time_augmentation": "rotations"}))
    with pytest.raises(BloodcellError, match="unknown test-time augmentation 'rotations'"):
        Classifier.load(str(copy))


@pytest.fixture(scope="module")
def tiny_grey_models_dir(tmp_path_factory, drawn_dataset, imagenet_weights):
    """A cellgrey model (grey cell view)."""
    return _train_tiny("cellgrey", tmp_path_factory.mktemp("grey-models"), drawn_dataset, imagenet_weights)


def test_grey_view_model_records_why_and_answers_alike_in_training_and_prediction(tiny_grey_models_dir,
                                                                                   drawn_dataset):
    card = json.loads((tiny_grey_models_dir / "cellgrey" / "card.json").read_text())
    assert card["view"] == "cell-grey"
    assert {"colour", "detail", "stain", "magnification"} <= set(card["shortcut_measures"])
    assert "4-6" in card["hyperparameters"]["augmentation"] and "hue" not in card["hyperparameters"]["augmentation"]
    classifier = Classifier.load("cellgrey", tiny_grey_models_dir)
    files = sorted((drawn_dataset / "seg_neutrophil").iterdir())[:4]
    batch = next(iter(make_dataset(files, [4] * len(files), 32, batch_size=len(files), view="cell-grey")))[0]
    from_files = np.stack([r.probabilities for r in classifier.predict_sources(files)])
    np.testing.assert_allclose(classifier.predict_proba(batch.numpy()), from_files, atol=1e-5)


def test_filled_view_model_records_its_crop_and_answers_alike_in_training_and_prediction(tmp_path,
                                                                                       drawn_dataset,
                                                                                       imagenet_weights):
    models_dir = _train_tiny("cellfill", tmp_path, drawn_dataset, imagenet_weights)
    card = json.loads((models_dir / "cellfill" / "card.json").read_text())
    assert card["view"] == "cell-fill" and "fills the view" in card["input"]
    assert "following the cell alone" in card["shortcut_measures"]["crop"]
    # A magnification change cancels out in this view, so none is simulated.
    assert card["hyperparameters"]["magnification_transfer"] == 0.0
    assert "magnification:" not in card["hyperparameters"]["augmentation"]
    classifier = Classifier.load("cellfill", models_dir)
    files = sorted((drawn_dataset / "erythroblast").iterdir())[:4]
    batch = next(iter(make_dataset(files, [1] * len(files), 32, batch_size=len(files), view="cell-fill")))[0]
    from_files = np.stack([r.probabilities for r in classifier.predict_sources(files)])
    np.testing.assert_allclose(classifier.predict_proba(batch.numpy()), from_files, atol=1e-5)


def test_texture_model_records_its_augmentation_and_answers_alike_in_training_and_prediction(
        tmp_path, drawn_dataset, imagenet_weights):
    from bloodcell.training import TEXTURE_MEASURES

    models_dir = _train_tiny("celltexture", tmp_path, drawn_dataset, imagenet_weights)
    card = json.loads((models_dir / "celltexture" / "card.json").read_text())
    assert card["view"] == "cell" and card["hyperparameters"]["random_texture"] == 0.5
    assert "texture: 50% of views given a random convolution" in card["hyperparameters"]["augmentation"]
    assert card["shortcut_measures"]["texture"] == TEXTURE_MEASURES["texture"]
    assert "stain" in card["shortcut_measures"] and "magnification:" in card["hyperparameters"]["augmentation"]
    # The random textures are for training only: prediction sees the plain cell view.
    classifier = Classifier.load("celltexture", models_dir)
    files = sorted((drawn_dataset / "monocyte").iterdir())[:4]
    batch = next(iter(make_dataset(files, [2] * len(files), 32, batch_size=len(files), view="cell")))[0]
    from_files = np.stack([r.probabilities for r in classifier.predict_sources(files)])
    np.testing.assert_allclose(classifier.predict_proba(batch.numpy()), from_files, atol=1e-5)


def test_twin_model_records_its_twins_and_their_caveat(tmp_path, drawn_dataset, imagenet_weights):
    from bloodcell.training import TWIN_AUGMENTATION, TWIN_MEASURES

    models_dir = _train_tiny("celltwin", tmp_path, drawn_dataset, imagenet_weights)
    card = json.loads((models_dir / "celltwin" / "card.json").read_text())
    hyper = card["hyperparameters"]
    assert card["view"] == "cell" and hyper["twin_share"] == 0.5 and hyper["magnification_transfer"] == 0.0
    assert hyper["augmentation"].endswith("; twins: " + TWIN_AUGMENTATION.format(share=0.5))
    # The twins do the magnification change themselves; the transfer is off.
    assert "magnification:" not in hyper["augmentation"] and "texture:" in hyper["augmentation"]
    measures = card["shortcut_measures"]
    assert measures["twins"] == TWIN_MEASURES["twins"] and "not independent evidence" in measures["caveat"]
    # Twins are for training only: prediction sees the plain cell view of the upload.
    classifier = Classifier.load("celltwin", models_dir)
    files = sorted((drawn_dataset / "erythroblast").iterdir())[:4]
    batch = next(iter(make_dataset(files, [1] * len(files), 32, batch_size=len(files), view="cell")))[0]
    from_files = np.stack([r.probabilities for r in classifier.predict_sources(files)])
    np.testing.assert_allclose(classifier.predict_proba(batch.numpy()), from_files, atol=1e-5)


def test_consistency_recipe_trains_on_pairs_and_ships_the_plain_network(tmp_path, drawn_dataset, imagenet_weights,
                                                                        monkeypatch):
    """A recipe with twin_consistency records its loss and saves a network that predicts as any other."""
    from bloodcell.training import RECIPES, TWIN_MEASURES, TWIN_PAIR_AUGMENTATION, TWIN_PAIR_MEASURE

    monkeypatch.setitem(RECIPES, "celltwin", {**RECIPES["celltwin"], "twin_share": 0.0, "twin_consistency": 12.0})
    models_dir = _train_tiny("celltwin", tmp_path, drawn_dataset, imagenet_weights)
    card = json.loads((models_dir / "celltwin" / "card.json").read_text())
    hyper = card["hyperparameters"]
    assert hyper["twin_consistency"] == 12.0 and "Jensen-Shannon" in hyper["loss"]
    assert hyper["augmentation"].endswith("; twins: " + TWIN_PAIR_AUGMENTATION.format(weight=12.0))
    # The card says how the twins were used here, not celltwin's "half the views replaced".
    assert card["shortcut_measures"]["twins"] == TWIN_PAIR_MEASURE
    assert card["shortcut_measures"]["caveat"] == TWIN_MEASURES["caveat"]
    classifier = Classifier.load("celltwin", models_dir)
    assert type(classifier.model).__name__ != "TwinConsistencyModel"
    files = sorted((drawn_dataset / "basophil").iterdir())[:3]
    batch = next(iter(make_dataset(files, [0] * len(files), 32, batch_size=len(files), view="cell")))[0]
    from_files = np.stack([r.probabilities for r in classifier.predict_sources(files)])
    np.testing.assert_allclose(classifier.predict_proba(batch.numpy()), from_files, atol=1e-5)


def test_shipped_cellgrey_card_describes_its_own_augmentation(shipped_models):
    """The grey model's card must not inherit cellfocus' colour-jitter description."""
    from bloodcell.training import _shortcut_measures

    card = json.loads((shipped_models / "cellgrey" / "card.json").read_text())
    assert card["shortcut_measures"] == _shortcut_measures("cell-grey")
    assert "colour jitter" not in card["shortcut_measures"]["augmentation"]


def test_shipped_cellfill_card_describes_its_own_crop(shipped_models):
    """The filled-view model's card must not inherit the cell view's crop and magnification transfer."""
    from bloodcell.training import _shortcut_measures

    card = json.loads((shipped_models / "cellfill" / "card.json").read_text())
    assert card["view"] == "cell-fill" and card["shortcut_measures"] == _shortcut_measures("cell-fill")
    assert "at least 0.6" not in card["input"] and card["hyperparameters"]["magnification_transfer"] == 0.0


def test_shipped_celltexture_card_describes_its_own_training(shipped_models):
    """The texture model's card says what its recipe adds, and why the recipe was followed up."""
    from bloodcell.training import RECIPES, TEXTURE_AUGMENTATION, _shortcut_measures

    card = json.loads((shipped_models / "celltexture" / "card.json").read_text())
    assert card["hyperparameters"]["augmentation"].endswith(
        "; texture: " + TEXTURE_AUGMENTATION.format(share=RECIPES["celltexture"]["random_texture"]))
    assert card["view"] == "cell" and card["shortcut_measures"] == _shortcut_measures("cell", random_texture=True)
    assert "not an untouched measurement" in card["shortcut_measures"]["selection"]
    assert {key: card["hyperparameters"][key] for key in RECIPES["celltexture"]} == RECIPES["celltexture"]


def test_shipped_celltwin_card_describes_its_own_training(shipped_models):
    """The twins model's card says what its recipe adds, and why its own drop is no evidence."""
    from bloodcell.training import RECIPES, TWIN_AUGMENTATION, _shortcut_measures

    card = json.loads((shipped_models / "celltwin" / "card.json").read_text())
    assert card["hyperparameters"]["augmentation"].endswith(
        "; twins: " + TWIN_AUGMENTATION.format(share=RECIPES["celltwin"]["twin_share"]))
    assert card["shortcut_measures"] == _shortcut_measures("cell", random_texture=True, twins=True)
    assert {key: card["hyperparameters"][key] for key in RECIPES["celltwin"]} == RECIPES["celltwin"]


@pytest.mark.parametrize("name", ["cellfocus", "cellgrey", "celltexture"])
def test_shipped_cards_name_the_magnification_their_recipe_zooms_by(shipped_models, name):
    """A card's magnification words come from its recipe's ruler, so card and recipe cannot drift apart."""
    from bloodcell.counterfactual import BY_WHITE_CELLS
    from bloodcell.training import RECIPES, magnification_augmentation

    recipe = RECIPES[name]
    card = json.loads((shipped_models / name / "card.json").read_text())
    expected = "; magnification: " + magnification_augmentation(
        recipe["magnification_transfer"], recipe.get("magnification_ruler", BY_WHITE_CELLS))
    assert expected in card["hyperparameters"]["augmentation"]
    assert card["hyperparameters"].get("magnification_ruler") == recipe.get("magnification_ruler")


def test_fixed_focus_recipe_records_its_focus_and_predicts_with_eight_views(tmp_path, drawn_dataset, imagenet_weights,
                                                                         monkeypatch):
    """A recipe trained at fixed detail levels says so in its card and predicts with test-time focus."""
    from bloodcell.inference import TTA_FLIPS_FOCUS
    from bloodcell.training import FIXED_FOCUS_AUGMENTATION, RECIPES

    monkeypatch.setitem(RECIPES, "cellfill", {**RECIPES["cellfill"], "focus_levels": (5.7, 12.5),
                                              "test_time_augmentation": TTA_FLIPS_FOCUS})
    models_dir = _train_tiny("cellfill", tmp_path, drawn_dataset, imagenet_weights)
    card = json.loads((models_dir / "cellfill" / "card.json").read_text())
    assert card["test_time_augmentation"] == TTA_FLIPS_FOCUS
    assert card["hyperparameters"]["focus_levels"] == [5.7, 12.5]
    assert FIXED_FOCUS_AUGMENTATION.format(levels="5.7 and 12.5") in card["hyperparameters"]["augmentation"]
    classifier = Classifier.load("cellfill", models_dir)
    files = sorted((drawn_dataset / "monocyte").iterdir())[:2]
    assert classifier.forward(np.stack([classifier.prepare(f) for f in files])).class_maps.shape[0] == 8


def test_a_twin_recipe_without_textures_does_not_claim_them():
    from bloodcell.training import TEXTURE_MEASURES, _shortcut_measures

    assert "texture" not in _shortcut_measures("cell", twins=True)
    assert _shortcut_measures("cell", random_texture=True, twins=True)["texture"] == TEXTURE_MEASURES["texture"]


def test_a_round_trip_recipe_says_so_and_why_it_was_chosen():
    """Round trips add their own measure and replace the twins' selection story with their own."""
    from bloodcell.training import ROUND_TRIP_MEASURES, TWIN_MEASURES, _shortcut_measures

    plain = _shortcut_measures("cell", random_texture=True, twins=True)
    with_trips = _shortcut_measures("cell", random_texture=True, twins=True, round_trips=True)
    assert "round_trips" not in plain and plain["selection"] == TWIN_MEASURES["selection"]
    assert with_trips["round_trips"] == ROUND_TRIP_MEASURES["round_trips"]
    assert with_trips["selection"] == ROUND_TRIP_MEASURES["selection"] != TWIN_MEASURES["selection"]
    assert with_trips["twins"] == TWIN_MEASURES["twins"]


def test_recipe_options_are_read_with_their_types():
    from bloodcell.training import RECIPE_OPTION_TYPES, RECIPES, parse_recipe_options

    assert parse_recipe_options(["twin_stain_parts=true", "round_trip_share=0.25", "epochs=12",
                                 "focus_levels=[5.7, 12.5]", "learning_rate=1", "fine_tune_from=block_14_expand"]) == {
        "twin_stain_parts": True, "round_trip_share": 0.25, "epochs": 12, "focus_levels": (5.7, 12.5),
        "learning_rate": 1.0, "fine_tune_from": "block_14_expand"}
    # Every entry of every shipped recipe can be set, so any recipe can be rebuilt from another.
    assert {key for recipe in RECIPES.values() for key in recipe} <= set(RECIPE_OPTION_TYPES)


def test_a_warm_start_begins_from_the_trained_models_weights(tiny_models_dir, drawn_dataset, tmp_path):
    from bloodcell.training import train

    source = tiny_models_dir / "cnn"
    out = train("cnn", drawn_dataset, tmp_path, epochs=1, image_size=32, batch_size=8, verbose=0,
                recipe_options={"learning_rate": 0.0}, init_from=source)
    card = json.loads((out / "card.json").read_text())
    assert card["initialised_from"] == {"model": "cnn", "folder": str(source),
                                        "file_sha256": json.loads((source / "card.json").read_text())["file_sha256"]}
    # With a learning rate of 0 the kernels stay exactly where the start left them.
    started, trained = Classifier.load(str(source)).model, Classifier.load(str(out)).model
    kernels = [(a, b) for a, b in zip(started.weights, trained.weights) if "kernel" in a.path]
    assert kernels and all(np.array_equal(a.numpy(), b.numpy()) for a, b in kernels)
    plain = json.loads((tiny_models_dir / "cnn" / "card.json").read_text())
    assert plain["initialised_from"] is None
    # The description says what the --set changed, so it never describes a recipe the run did not follow.
    assert plain["description"] == MODEL_SPECS["cnn"].description
    assert card["description"] == MODEL_SPECS["cnn"].description + (
        " Changed from that recipe: learning_rate=0.0 (see recipe_options).")


def test_a_warm_start_refuses_a_pair_and_another_network(tiny_models_dir, drawn_dataset, tmp_path):
    import keras

    from bloodcell.training import train

    pair = tmp_path / "somepair"
    pair.mkdir()
    (pair / "card.json").write_text(json.dumps({"name": "somepair", "pair": {"between": {"model": "a"},
                                                                              "within": {"model": "b"}}}))
    with pytest.raises(BloodcellError, match="a pair has no network of its own; start from one of its members"):
        train("cnn", drawn_dataset, tmp_path / "out", epochs=1, image_size=32, verbose=0, init_from=pair)
    other = tmp_path / "other"
    other.mkdir()
    small = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    small.save(other / "model.keras")
    (other / "card.json").write_text(json.dumps({"name": "other"}))
    with pytest.raises(BloodcellError, match="is not this model's"):
        train("cnn", drawn_dataset, tmp_path / "out", epochs=1, image_size=32, verbose=0, init_from=other)


def test_a_warm_started_mobilenet_skips_the_head_phase_and_needs_no_imagenet_file(tiny_cell_models_dir, drawn_dataset,
                                                                                   tmp_path, monkeypatch):
    from bloodcell.config import IMAGENET_WEIGHTS_ENV
    from bloodcell.training import train

    monkeypatch.setenv(IMAGENET_WEIGHTS_ENV, str(tmp_path / "no-such-weights.h5"))
    out = train("cellfocus", drawn_dataset, tmp_path, epochs=1, image_size=32, batch_size=8, verbose=0,
                recipe_options={"head_epochs": 0}, init_from=tiny_cell_models_dir / "cellfocus")
    card = json.loads((out / "card.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert card["imagenet_weights"] is None and card["initialised_from"]["model"] == "cellfocus"
    assert card["hyperparameters"]["head_epochs"] == 0 and card["epochs_run"] == 1
    assert [row["phase"] for row in history] == ["fine_tune"]
