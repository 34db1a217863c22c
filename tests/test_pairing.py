"""A pair takes each lab's group from one model and the class inside it from another, with exact Grad-CAM."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bloodcell.cli import main
from bloodcell.config import CLASS_NAMES, SOURCE_LAB
from bloodcell.errors import BloodcellError
from bloodcell.explain import GRADCAM, SMOOTHGRAD, Explainer
from bloodcell.inference import Classifier, available_models, softmax
from bloodcell.pairing import GROUPS, combine, log_probability_gradients

RNG = np.random.default_rng(7)


def random_probabilities(n: int) -> np.ndarray:
    return softmax(RNG.normal(0, 2, (n, len(CLASS_NAMES))))


def test_groups_are_the_labs_of_the_classes():
    for c, name in enumerate(CLASS_NAMES):
        same_lab = [other for other in CLASS_NAMES if SOURCE_LAB[other] == SOURCE_LAB[name]]
        group = GROUPS[GROUPS[:, c] == 1][0]
        assert [CLASS_NAMES[k] for k in np.flatnonzero(group)] == same_lab


def test_the_group_comes_from_between_and_the_odds_inside_it_from_within():
    between, within = random_probabilities(20), random_probabilities(20)
    paired = combine(between, within)
    np.testing.assert_allclose(paired.sum(axis=1), 1.0)
    np.testing.assert_allclose(paired @ GROUPS.T, between @ GROUPS.T)
    # Inside a group, the ratios of two classes are within's.
    barcelona = np.flatnonzero(GROUPS[0])
    np.testing.assert_allclose(paired[:, barcelona[0]] / paired[:, barcelona[1]],
                               within[:, barcelona[0]] / within[:, barcelona[1]])
    # One model with itself is that model.
    np.testing.assert_allclose(combine(between, between), between)


def assert_gradients_match_finite_differences(log_paired, between_logits, within_logits, d_between, d_within,
                                              step: float, atol: float) -> None:
    """Central differences of `log_paired` in each member's logit k against the analytic gradients."""
    for k in range(len(CLASS_NAMES)):
        bump = np.zeros(len(CLASS_NAMES))
        bump[k] = step
        numeric_b = (log_paired(between_logits + bump, within_logits)
                     - log_paired(between_logits - bump, within_logits)) / (2 * step)
        numeric_w = (log_paired(between_logits, within_logits + bump)
                     - log_paired(between_logits, within_logits - bump)) / (2 * step)
        np.testing.assert_allclose(d_between[:, :, k], numeric_b, atol=atol)
        np.testing.assert_allclose(d_within[:, :, k], numeric_w, atol=atol)


def test_the_gradients_match_finite_differences():
    between_logits, within_logits = RNG.normal(0, 2, (3, 5)), RNG.normal(0, 2, (3, 5))
    t_between, t_within = 0.8, 1.3

    def softmax64(z, t):  # the app's softmax returns float32: too coarse for finite differences
        e = np.exp(z / t - (z / t).max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def log_paired(zb, zw):
        return np.log(combine(softmax64(zb, t_between), softmax64(zw, t_within)))

    d_between, d_within = log_probability_gradients(softmax64(between_logits, t_between),
                                                    softmax64(within_logits, t_within), t_between, t_within)
    assert_gradients_match_finite_differences(log_paired, between_logits, within_logits, d_between, d_within,
                                              step=1e-6, atol=1e-6)


def test_the_gradients_through_a_blend_and_an_offset_match_finite_differences():
    """pair_forward's gradients are those of its own probabilities, whatever the blend and offset."""
    from bloodcell.pairing import group_offset_logits, pair_forward

    between_logits, within_logits = RNG.normal(0, 2, (3, 5)), RNG.normal(0, 2, (3, 5))
    t_between, t_within, shift = 0.8, 1.3, group_offset_logits(0.7)
    for blend in (0.0, 0.5, 0.8):
        def log_paired(zb, zw):
            return np.log(pair_forward(zb, zw, t_between, t_within, shift, blend)[0].astype(np.float64))

        _, d_between, (d_within,) = pair_forward(between_logits, within_logits, t_between, t_within, shift, blend)
        # The app's softmax is float32, so the step cannot be tiny.
        assert_gradients_match_finite_differences(log_paired, between_logits, within_logits, d_between, d_within,
                                                  step=1e-3, atol=2e-3)


def test_a_blend_moves_only_the_decision_inside_a_group():
    from bloodcell.pairing import blended_within, pair_forward

    between_logits, within_logits = RNG.normal(0, 2, (20, 5)), RNG.normal(0, 2, (20, 5))
    alone = pair_forward(between_logits, within_logits, 0.9, 1.2)[0]
    np.testing.assert_allclose(alone, combine(softmax(between_logits, 0.9), softmax(within_logits, 1.2)), rtol=1e-5)
    np.testing.assert_allclose(blended_within(between_logits, within_logits, 0.9, 1.2), softmax(within_logits, 1.2),
                               rtol=1e-5)
    half = pair_forward(between_logits, within_logits, 0.9, 1.2, within_blend=0.5)[0]
    # The groups' probabilities are the between model's whatever the blend ...
    np.testing.assert_allclose(half @ GROUPS.T, alone @ GROUPS.T, rtol=1e-5)
    assert not np.allclose(half, alone, rtol=1e-2)
    # ... and inside a group the odds are the geometric mean of the members' calibrated odds.
    barcelona = np.flatnonzero(GROUPS[0])
    odds = lambda p: p[:, barcelona[0]] / p[:, barcelona[1]]  # noqa: E731
    geometric_mean = np.sqrt(odds(softmax(between_logits, 0.9)) * odds(softmax(within_logits, 1.2)))
    np.testing.assert_allclose(odds(half), geometric_mean, rtol=1e-4)
    # With all of the say, the between model is the pair.
    np.testing.assert_allclose(pair_forward(between_logits, within_logits, 0.9, 1.2, within_blend=1.0)[0],
                               softmax(between_logits, 0.9), rtol=1e-5)


def test_several_within_models_share_the_decision_inside_a_group_equally():
    """Within models' calibrated logits are averaged; each one's gradients match finite differences."""
    from bloodcell.pairing import blended_within, pair_forward

    between_logits = RNG.normal(0, 2, (4, 5))
    within_logits = [RNG.normal(0, 2, (4, 5)) for _ in range(3)]
    temperatures = [1.3, 0.7, 2.0]
    mean = np.mean([z / t for z, t in zip(within_logits, temperatures)], axis=0)
    np.testing.assert_allclose(blended_within(between_logits, within_logits, 0.9, temperatures), softmax(mean),
                               rtol=1e-5)
    np.testing.assert_allclose(blended_within(between_logits, within_logits, 0.9, temperatures, 0.25),
                               softmax(0.25 * between_logits / 0.9 + 0.75 * mean), rtol=1e-5)
    # Three copies of one within model are that model.
    np.testing.assert_allclose(blended_within(between_logits, [within_logits[0]] * 3, 0.9, [1.3] * 3),
                               softmax(within_logits[0], 1.3), rtol=1e-5)
    with pytest.raises(BloodcellError, match="one temperature for each"):
        blended_within(between_logits, within_logits, 0.9, [1.0, 1.0])

    for blend in (0.0, 0.25):
        _, d_between, d_within = pair_forward(between_logits, within_logits, 0.9, temperatures, 0.0, blend)
        assert len(d_within) == 3
        for j in range(3):
            def log_paired(zb, zw, j=j):
                others = [zw if i == j else z for i, z in enumerate(within_logits)]
                return np.log(pair_forward(zb, others, 0.9, temperatures, 0.0, blend)[0].astype(np.float64))

            assert_gradients_match_finite_differences(log_paired, between_logits, within_logits[j], d_between,
                                                      d_within[j], step=1e-3, atol=2e-3)


@pytest.mark.parametrize("blend", [-0.1, 1.5, "half", None])
def test_a_blend_outside_zero_to_one_is_refused(blend):
    from bloodcell.pairing import check_within_blend

    with pytest.raises(BloodcellError, match="within blend"):
        check_within_blend(blend)


def test_the_group_offset_fit_finds_a_known_shift_and_leaves_a_centred_model_alone():
    """Labels drawn from a model's own probabilities: that model needs no offset, and
    the same model pushed away from the first group by 1.5 log-odds needs +1.5 back."""
    from bloodcell.pairing import fit_group_offset, group_offset_logits

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (6000, len(CLASS_NAMES)))
    cumulative = np.cumsum(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), axis=1)
    labels = np.minimum((rng.random((len(logits), 1)) > cumulative).sum(axis=1), len(CLASS_NAMES) - 1)
    assert abs(fit_group_offset(logits, logits, labels, 1.0, 1.0)) < 0.1
    pushed = (logits - group_offset_logits(1.5)) * 2.0  # at temperature 2 the offset acts on logits / 2
    assert fit_group_offset(pushed, logits, labels, 2.0, 1.0) == pytest.approx(1.5, abs=0.1)
    # The within model does not enter: the group's probability is the between model's alone.
    assert fit_group_offset(pushed, rng.normal(0, 2, logits.shape), labels, 2.0, 1.0) == pytest.approx(1.5, abs=0.1)


def test_the_group_offset_fit_refuses_logits_and_labels_that_do_not_match():
    from bloodcell.pairing import fit_group_offset

    logits = np.zeros((4, len(CLASS_NAMES)))
    with pytest.raises(BloodcellError, match="same, non-empty images"):
        fit_group_offset(logits, logits, np.zeros(3, int), 1.0, 1.0)
    with pytest.raises(BloodcellError, match="same, non-empty images"):
        fit_group_offset(logits[:0], logits[:0], np.zeros(0, int), 1.0, 1.0)


def test_a_group_offset_shifts_the_named_labs_classes_only():
    from bloodcell.pairing import LABS, group_offset_logits

    for lab, group in zip(LABS, GROUPS):
        np.testing.assert_array_equal(group_offset_logits(0.5, lab), 0.5 * group)
    with pytest.raises(BloodcellError, match="photographed none of the classes"):
        group_offset_logits(0.5, "Nowhere")


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory, tiny_models_dir, drawn_dataset):
    """The tiny cnn beside a copy of itself (as 'twin_copy'), and their pair built by the CLI."""
    models = tmp_path_factory.mktemp("pair-models")
    shutil.copytree(tiny_models_dir / "cnn", models / "cnn")
    shutil.copytree(tiny_models_dir / "cnn", models / "twin_copy")
    shutil.copyfile(tiny_models_dir / "split.json", models / "split.json")
    assert main(["-q", "pair", "--between", "twin_copy", "--within", "cnn", "--name", "pair",
                 "--data", str(drawn_dataset), "--out", str(models)]) == 0
    return models


def test_a_pair_is_listed_and_reported_like_a_model(pair_dir):
    assert available_models(pair_dir) == ["cnn", "pair", "twin_copy"]
    card = json.loads((pair_dir / "pair" / "card.json").read_text())
    assert card["pair"]["between"]["model"] == "twin_copy" and card["pair"]["within"]["model"] == "cnn"
    assert {"calibration", "ood", "test_metrics"} <= set(card)
    metrics = json.loads((pair_dir / "pair" / "metrics.json").read_text())
    assert metrics["n"] == card["test_metrics"]["n"] > 0


def test_a_model_paired_with_itself_answers_and_explains_as_the_model(pair_dir, drawn_dataset):
    member, paired = Classifier.load("cnn", pair_dir), Classifier.load("pair", pair_dir)
    x = np.stack([member.prepare(path) for path in sorted(drawn_dataset.glob("*/*.png"))[:6]])
    alone, together = member.forward(x), paired.forward(x)
    p = softmax(alone.logits, member.temperature)
    np.testing.assert_allclose(np.exp(together.logits), p, rtol=1e-5)
    np.testing.assert_allclose(together.features, np.concatenate([alone.features, alone.features], axis=1))
    # d log p_c / d z_k = (1[k = c] - p_k) / T: each class's map less the probability-weighted mean map.
    expected = (alone.class_maps - np.einsum("vnhwk,nk->vnhw", alone.class_maps, p)[..., None]) / member.temperature
    np.testing.assert_allclose(together.class_maps, expected, rtol=1e-4, atol=1e-5)
    explanation = Explainer(paired).gradcam(x[0])
    assert explanation.heatmap.shape == (paired.input_size, paired.input_size)
    assert np.isfinite(explanation.heatmap).all()


def test_other_heatmap_methods_explain_one_network_and_say_so(pair_dir):
    paired = Classifier.load("pair", pair_dir)
    x = np.zeros((paired.input_size, paired.input_size, 3), np.float32)
    assert Explainer(paired).explain(x, GRADCAM).method == GRADCAM
    with pytest.raises(BloodcellError, match="choose one of its members"):
        Explainer(paired).explain(x, SMOOTHGRAD)


def test_a_missing_or_replaced_member_is_named(pair_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(pair_dir, models)
    card_path = models / "cnn" / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "file_sha256": "0" * 64}))
    with pytest.raises(BloodcellError, match="built from cnn as it was before.*python -m bloodcell pair"):
        Classifier.load("pair", models, verify_checksum=False)
    card_path.write_text(json.dumps({**card, "calibration": {**card["calibration"], "temperature": 3.0}}))
    with pytest.raises(BloodcellError, match="retrained or recalibrated"):
        Classifier.load("pair", models, verify_checksum=False)
    shutil.rmtree(models / "cnn")
    with pytest.raises(BloodcellError, match="needs its member cnn"):
        Classifier.load("pair", models)


def test_a_pair_refuses_to_overwrite_a_trained_model(pair_dir, drawn_dataset, capsys):
    code = main(["-q", "pair", "--between", "twin_copy", "--within", "cnn", "--name", "cnn",
                 "--data", str(drawn_dataset), "--out", str(pair_dir)])
    assert code != 0 and "holds a trained model" in capsys.readouterr().err
    assert json.loads((pair_dir / "cnn" / "card.json").read_text())["name"] == "cnn"
    code = main(["-q", "pair", "--between", "twin_copy", "--within", "cnn", "--name", "../escaped",
                 "--data", str(drawn_dataset), "--out", str(pair_dir)])
    assert code != 0 and "is not a model name" in capsys.readouterr().err
    assert not (pair_dir.parent / "escaped").exists()


def test_the_app_explains_a_pair_with_grad_cam_whatever_method_is_chosen(pair_dir, drawn_dataset):
    from bloodcell.service import ModelService

    path = sorted(drawn_dataset.glob("*/*.png"))[0]
    analysis = ModelService.load("pair", pair_dir).analyse(path.name, path.read_bytes(), SMOOTHGRAD)
    assert analysis.ok and analysis.method == GRADCAM
    assert analysis.heatmap.shape == (32, 32)


def test_a_grey_view_member_is_served_from_the_cell_view(pair_dir, drawn_dataset, tmp_path):
    """A cell-view model and a grey-view model share one input: the grey one gets its view made from it."""
    from bloodcell.cellview import grey_of_cell_views
    from bloodcell.pairing import make_pair

    models = tmp_path / "models"
    shutil.copytree(pair_dir, models)
    for name, view in (("twin_copy", "cell-grey"), ("cnn", "cell")):
        card_path = models / name / "card.json"
        card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "view": view}))
    make_pair("twin_copy", "cnn", "mixed", drawn_dataset, models)
    paired = Classifier.load("mixed", models)
    assert paired.view == "cell" and json.loads((models / "mixed" / "card.json").read_text())["view"] == "cell"
    between, within = Classifier.load("twin_copy", models), Classifier.load("cnn", models)
    paths = sorted(drawn_dataset.glob("*/*.png"))[:4]
    x = np.stack([paired.prepare(path) for path in paths])
    np.testing.assert_array_equal(grey_of_cell_views(x), np.stack([between.prepare(path) for path in paths]))
    expected = combine(softmax(between.forward(grey_of_cell_views(x)).logits, between.temperature),
                       softmax(within.forward(x).logits, within.temperature))
    np.testing.assert_allclose(np.exp(paired.forward(x).logits), expected, rtol=1e-5)
    assert paired.view_description.endswith(f"; {paired.between.name} sees it in grey levels with its fine detail capped")
    # The other way round there is no grey input to make a colour view from: refused, and nothing written.
    for name, view in (("twin_copy", "cell-grey"), ("cnn", "cell-fill")):
        card_path = models / name / "card.json"
        card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "view": view}))
    with pytest.raises(BloodcellError, match="none of these views is made from the others"):
        make_pair("twin_copy", "cnn", "refused", drawn_dataset, models)
    assert not (models / "refused").exists()


def test_a_pair_with_a_member_trained_on_twins_counts_as_trained_on_twins():
    from bloodcell.audit import trained_on_twins

    member = {"model": "celltwin", "file_sha256": "0" * 64, "trained_on_twins": True}
    assert trained_on_twins({"pair": {"method": "m", "between": member, "within": {**member, "trained_on_twins": False}}})
    assert not trained_on_twins({"pair": {"between": {**member, "trained_on_twins": False}}})
    assert trained_on_twins({"hyperparameters": {"twin_share": 0.5}})
    # Twins beside every view, none in place of one: the model still saw the audit's transform.
    assert trained_on_twins({"hyperparameters": {"twin_share": 0.0, "twin_consistency": 12.0}})
    assert not trained_on_twins({"hyperparameters": {"twin_share": 0.0, "twin_consistency": 0.0}})


def test_the_benchmark_times_a_pair_with_grad_cam_only(pair_dir, drawn_dataset):
    from bloodcell.bench import in_process

    results = in_process("pair", pair_dir, sorted(drawn_dataset.glob("*/*.png"))[:4], runs=2, batch_size=4)
    assert results["predict_p50_ms"] > 0 and results["gradcam_p50_ms"] > 0
    assert "smoothgrad_p50_ms" not in results and results["batch_images"] == 4


def test_a_missing_shipped_pair_says_how_to_build_it(tmp_path):
    with pytest.raises(BloodcellError, match="python -m bloodcell pair --between celltwin --within cellfocus"):
        Classifier.load("cellpair", tmp_path)
    with pytest.raises(BloodcellError, match="--between cellagree --within cellfocus --name cellagreepair "
                                             "--within-blend 0.5"):
        Classifier.load("cellagreepair", tmp_path)
    with pytest.raises(BloodcellError, match="averaged by 'python -m bloodcell soup RUN RUN --name cellagree'"):
        Classifier.load("cellagree", tmp_path)


def test_shipped_pairs_are_built_as_their_recipes_say(shipped_models):
    from bloodcell.config import PAIRED_MODELS

    for name, recipe in PAIRED_MODELS.items():
        pair = json.loads((shipped_models / name / "card.json").read_text())["pair"]
        assert (pair["between"]["model"], pair["within"]["model"]) == (recipe.between, recipe.within), name
        assert pair.get("within_blend", 0.0) == recipe.within_blend, name


def test_a_pair_can_share_members_a_caller_already_holds(pair_dir):
    held = {name: Classifier.load(name, pair_dir) for name in ("cnn", "twin_copy")}
    paired = Classifier.load("pair", pair_dir, load_member=held.__getitem__)
    assert paired.between is held["twin_copy"] and paired.within is held["cnn"]


def test_models_that_see_different_inputs_are_refused_before_anything_is_written(pair_dir, drawn_dataset, tmp_path):
    from bloodcell.pairing import make_pair

    models = tmp_path / "models"
    shutil.copytree(pair_dir, models)
    card_path = models / "twin_copy" / "card.json"
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "view": "cell"}))
    with pytest.raises(BloodcellError, match="differ in view"):
        make_pair("twin_copy", "cnn", "mixed", drawn_dataset, models)
    assert not (models / "mixed").exists()


def test_a_pair_with_a_fitted_group_offset_applies_it_everywhere(pair_dir, drawn_dataset, tmp_path, capsys):
    """The CLI fits the offset on the validation split, the card records it, and the pair's
    probabilities and Grad-CAM gradients are the members' with the between model shifted by it."""
    from bloodcell.pairing import GROUP_OFFSET_BOUND, group_offset_logits, split_member_logits
    from bloodcell.data import load_manifest, manifest_path
    from pages.common import pair_members

    models = tmp_path / "models"
    shutil.copytree(pair_dir, models)
    assert main(["pair", "--between", "twin_copy", "--within", "cnn", "--name", "shifted", "--fit-group-offset",
                 "--data", str(drawn_dataset), "--out", str(models)]) == 0
    assert "group offset" in capsys.readouterr().out
    card = json.loads((models / "shifted" / "card.json").read_text())
    offset = card["pair"]["group_offset"]
    assert offset["lab"] == SOURCE_LAB[CLASS_NAMES[0]] and abs(offset["log_odds"]) <= GROUP_OFFSET_BOUND
    assert "validation split" in pair_members(card) and f"{abs(offset['log_odds']):.2f} log-odds" in pair_members(card)
    assert "towards" in pair_members({"pair": {**card["pair"], "group_offset": {**offset, "log_odds": 0.5}}})
    assert "away from" in pair_members({"pair": {**card["pair"], "group_offset": {**offset, "log_odds": -0.5}}})
    assert "calibration" in card and "ood" in card

    paired = Classifier.load("shifted", models)
    between, within = Classifier.load("twin_copy", models), Classifier.load("cnn", models)
    # The fitted offset is the best one on the validation split: a small step either way costs log loss.
    a, (b,), labels = split_member_logits(paired, load_manifest(manifest_path(models)), drawn_dataset, "val")

    def val_log_loss(shift):
        p = combine(softmax(a / between.temperature + group_offset_logits(shift)), softmax(b, within.temperature))
        return -np.mean(np.log(p[np.arange(len(labels)), labels].astype(np.float64)))

    best = offset["log_odds"]
    if abs(best) < GROUP_OFFSET_BOUND - 0.1:
        assert val_log_loss(best) <= min(val_log_loss(best - 0.1), val_log_loss(best + 0.1)) + 1e-6

    # Whatever the card says is what every prediction uses (a large offset, so that it shows).
    card["pair"]["group_offset"]["log_odds"] = 2.0
    (models / "shifted" / "card.json").write_text(json.dumps(card))
    paired = Classifier.load("shifted", models)
    x = np.stack([paired.prepare(path) for path in sorted(drawn_dataset.glob("*/*.png"))[:5]])
    within_p = softmax(within.forward(x).logits, within.temperature)
    shifted = softmax(between.forward(x).logits / between.temperature + group_offset_logits(2.0))
    unshifted = softmax(between.forward(x).logits, between.temperature)
    together = np.exp(paired.forward(x).logits)
    np.testing.assert_allclose(together, combine(shifted, within_p), rtol=1e-4)
    assert not np.allclose(together, combine(unshifted, within_p), rtol=1e-2)
    explanation = Explainer(paired).gradcam(x[0])
    assert np.isfinite(explanation.heatmap).all()


def test_a_pair_with_a_within_blend_applies_it_everywhere(pair_dir, drawn_dataset, tmp_path, capsys):
    """The CLI records the blend on the card, the pages and the rebuild hint name it, and the pair's
    probabilities are the members' blended inside a group."""
    from bloodcell.pairing import make_pair, pair_options
    from pages.common import pair_members

    models = tmp_path / "models"
    shutil.copytree(pair_dir, models)
    # The members are copies of one network: a different temperature makes their calibrated logits differ.
    twin_card_path = models / "twin_copy" / "card.json"
    twin_card = json.loads(twin_card_path.read_text())
    twin_card["calibration"]["temperature"] = 4.0
    twin_card_path.write_text(json.dumps(twin_card))
    assert main(["pair", "--between", "twin_copy", "--within", "cnn", "--name", "blended", "--within-blend", "0.5",
                 "--data", str(drawn_dataset), "--out", str(models)]) == 0
    assert "cnn and twin_copy together within a lab (their calibrated logits blended 0.5 : 0.5)" in \
        capsys.readouterr().out
    card = json.loads((models / "blended" / "card.json").read_text())
    assert card["pair"]["within_blend"] == 0.5 and "calibration" in card and "ood" in card
    assert "cnn and twin_copy together within a lab" in pair_members(card) and "0.5 : 0.5" in pair_members(card)
    assert pair_options(card) == " --within-blend 0.5"
    assert "within_blend" not in json.loads((models / "pair" / "card.json").read_text())["pair"]

    # Whatever blend the card says is what every prediction uses.
    card["pair"]["within_blend"] = 0.25
    (models / "blended" / "card.json").write_text(json.dumps(card))
    paired = Classifier.load("blended", models)
    between, within = paired.between, paired.within
    assert between.temperature == 4.0 != within.temperature
    x = np.stack([paired.prepare(path) for path in sorted(drawn_dataset.glob("*/*.png"))[:5]])
    a, b = between.forward(x).logits, within.forward(x).logits
    blended = softmax(0.25 * a / between.temperature + 0.75 * b / within.temperature)
    together = np.exp(paired.forward(x).logits)
    np.testing.assert_allclose(together, combine(softmax(a, between.temperature), blended), rtol=1e-4)
    assert not np.allclose(together, combine(softmax(a, between.temperature), softmax(b, within.temperature)),
                           rtol=1e-3)
    assert np.isfinite(Explainer(paired).gradcam(x[0]).heatmap).all()

    card["pair"]["within_blend"] = 2.0
    (models / "blended" / "card.json").write_text(json.dumps(card))
    with pytest.raises(BloodcellError, match="within blend"):
        Classifier.load("blended", models)
    with pytest.raises(BloodcellError, match="within blend"):
        make_pair("twin_copy", "cnn", "refused", drawn_dataset, models, within_blend=-1)
    assert not (models / "refused").exists()


def test_a_pair_with_several_within_models_lists_them_and_applies_their_mean(pair_dir, drawn_dataset, tmp_path,
                                                                             capsys):
    """`--within` given more than once: the card lists every within model, the words, the audit's
    checksums and the rebuild hint name them all, and every prediction averages their logits."""
    from bloodcell.audit import trained_on_twins
    from bloodcell.pairing import make_pair, members_sha256, pair_command
    from pages.common import pair_members

    models = tmp_path / "models"
    shutil.copytree(pair_dir, models)
    # A third copy of the network with another temperature, so that the within models' calibrated logits differ.
    shutil.copytree(models / "cnn", models / "cnn_hot")
    hot_card = json.loads((models / "cnn_hot" / "card.json").read_text())
    hot_card["calibration"]["temperature"] = 3.0
    (models / "cnn_hot" / "card.json").write_text(json.dumps(hot_card))
    assert main(["pair", "--between", "twin_copy", "--within", "cnn", "--within", "cnn_hot", "--name", "team",
                 "--within-blend", "0.2", "--data", str(drawn_dataset), "--out", str(models)]) == 0
    assert "cnn, cnn_hot and twin_copy together within a lab" in capsys.readouterr().out
    card = json.loads((models / "team" / "card.json").read_text())
    assert [entry["model"] for entry in card["pair"]["within"]] == ["cnn", "cnn_hot"]
    assert "0.4 each and twin_copy 0.2" in pair_members(card)
    assert pair_command(card) == ("python -m bloodcell pair --between twin_copy --within cnn --within cnn_hot "
                                  "--name team --within-blend 0.2")
    sha = card["pair"]["between"]["file_sha256"]
    assert members_sha256(card["pair"]) == {"between": sha, "within": [sha, sha]}
    assert not trained_on_twins(card)

    paired = Classifier.load("team", models)
    # (every copy's card names it cnn, so the temperature tells them apart)
    assert len(paired.members) == 3 and paired.within_members[1].temperature == 3.0
    x = np.stack([paired.prepare(path) for path in sorted(drawn_dataset.glob("*/*.png"))[:5]])
    z = paired.between.forward(x).logits
    mean = np.mean([z / member.temperature for member in paired.members[1:]], axis=0)
    blended = softmax(0.2 * z / paired.between.temperature + 0.8 * mean)
    forward = paired.forward(x)
    np.testing.assert_allclose(np.exp(forward.logits), combine(softmax(z, paired.between.temperature), blended),
                               rtol=1e-4)
    assert forward.features.shape[1] == 3 * paired.between.forward(x).features.shape[1]
    assert np.isfinite(Explainer(paired).gradcam(x[0]).heatmap).all()

    # A retrained within model voids the pair, and the hint rebuilds it with every within model.
    hot_card["calibration"]["temperature"] = 2.0
    (models / "cnn_hot" / "card.json").write_text(json.dumps(hot_card))
    with pytest.raises(BloodcellError, match="--within cnn --within cnn_hot --name team"):
        Classifier.load("team", models)
    with pytest.raises(BloodcellError, match="each may play one role once"):
        make_pair("twin_copy", ["cnn", "cnn"], "twice", drawn_dataset, models)
    assert not (models / "twice").exists()
