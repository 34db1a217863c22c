"""Averaging two runs of one recipe gives one model, reported on like a trained one; bad runs are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bloodcell.charts import history_figure
from bloodcell.cli import main
from bloodcell.data import sha256_file
from bloodcell.errors import BloodcellError
from bloodcell.inference import Classifier
from bloodcell.soup import average_weights, check_runs

SEEDS = (11, 12)
SOUP = "focussoup"


@pytest.fixture(scope="module")
def soup_dirs(tmp_path_factory, drawn_dataset, imagenet_weights):
    """Two one-epoch cellfocus runs at 32 pixels with different seeds, and their soup made by the CLI
    under a name of its own, as a soup ships beside its recipe's model."""
    from bloodcell.training import train

    runs = []
    for seed in SEEDS:
        folder = tmp_path_factory.mktemp(f"run-{seed}")
        train("cellfocus", drawn_dataset, folder, epochs=1, image_size=32, batch_size=8, verbose=0,
              base_weights=str(imagenet_weights), seed=seed)
        runs.append(folder / "cellfocus")
    out = tmp_path_factory.mktemp("soup")
    # An audit of the model the soup replaces: it describes that model, so the soup must remove it.
    (out / SOUP).mkdir()
    (out / SOUP / "audit.json").write_text("{}")
    assert main(["-q", "soup", *map(str, runs), "--data", str(drawn_dataset), "--out", str(out), "--name", SOUP]) == 0
    return runs, out


def test_soup_is_the_mean_of_its_runs_weights(soup_dirs):
    import keras

    runs, out = soup_dirs
    run_weights = [keras.saving.load_model(run / "model.keras", compile=False).get_weights() for run in runs]
    soup_weights = keras.saving.load_model(out / SOUP / "model.keras", compile=False).get_weights()
    differing = [i for i, (a, b) in enumerate(zip(*run_weights)) if not np.array_equal(a, b)]
    assert differing, "the two seeds should give different weights"
    for i in differing:
        assert np.allclose(soup_weights[i], (run_weights[0][i] + run_weights[1][i]) / 2, atol=1e-6)


def test_soup_card_records_its_runs_and_is_reported_like_a_trained_model(soup_dirs):
    runs, out = soup_dirs
    folder = out / SOUP
    card = json.loads((folder / "card.json").read_text())
    assert card["name"] == SOUP and not (out / "cellfocus").exists()
    assert [run["seed"] for run in card["soup"]["runs"]] == list(SEEDS)
    assert card["hyperparameters"]["seed"] == list(SEEDS)
    assert card["file_sha256"] == sha256_file(folder / "model.keras")
    run_cards = [json.loads((run / "card.json").read_text()) for run in runs]
    assert card["epochs_run"] == sum(c["epochs_run"] for c in run_cards)
    assert [run["file_sha256"] for run in card["soup"]["runs"]] == [c["file_sha256"] for c in run_cards]
    # Fitted afresh for the averaged network, from the train and validation splits.
    assert "calibration" in card and "ood" in card and card["lite"]["source_sha256"] == card["file_sha256"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert card["test_metrics"]["accuracy"] == metrics["accuracy"]
    history = json.loads((folder / "history.json").read_text())
    assert sorted({row["run"] for row in history}) == [1, 2]
    # Each run: its three curves, and its best epoch named in the legend.
    names = [trace.name for trace in history_figure(history, "loss").data]
    assert sum(": " in name for name in names) == 6 and sum("best epoch" in name for name in names) == 2
    assert (out / "split.json").read_bytes() == (runs[0].parent / "split.json").read_bytes()
    classifier = Classifier.load(SOUP, out)
    assert classifier.predict_proba(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)


def test_soup_refuses_what_cannot_be_averaged(soup_dirs, tiny_models_dir, tmp_path):
    runs, _ = soup_dirs
    with pytest.raises(BloodcellError, match="at least two"):
        check_runs(runs[:1])
    with pytest.raises(BloodcellError, match="must differ"):
        check_runs([runs[0], runs[0]])
    with pytest.raises(BloodcellError, match="random weights"):
        check_runs([tiny_models_dir / "cnn", tiny_models_dir / "cnn"])
    with pytest.raises(BloodcellError, match="already an average"):
        check_runs([runs[0], soup_dirs[1] / SOUP])
    with pytest.raises(BloodcellError, match="not a model folder"):
        check_runs([runs[0], tmp_path])
    other = tmp_path / "other" / "cellfocus"
    shutil.copytree(runs[1], other)
    card = json.loads((other / "card.json").read_text())
    (other / "card.json").write_text(json.dumps({**card, "hyperparameters": {
        **card["hyperparameters"], "fine_tune_learning_rate": 1.0}}))
    with pytest.raises(BloodcellError, match="another recipe"):
        check_runs([runs[0], other])
    (other / "card.json").write_text(json.dumps({**card, "view": "full"}))
    with pytest.raises(BloodcellError, match="differs .* in view"):
        check_runs([runs[0], other])
    with pytest.raises(BloodcellError, match="differ in shape"):
        average_weights([[np.zeros((2, 3))], [np.zeros((3, 2))]])


def test_soup_removes_results_of_the_model_it_replaces(soup_dirs):
    _, out = soup_dirs
    assert not (out / SOUP / "audit.json").exists()
    assert (out / SOUP / "model.keras").is_file()


def test_soup_never_overwrites_one_of_its_runs(soup_dirs, drawn_dataset, capsys):
    runs, _ = soup_dirs
    before = sha256_file(runs[0] / "model.keras")
    assert main(["soup", *map(str, runs), "--data", str(drawn_dataset), "--out", str(runs[0].parent)]) == 2
    assert "overwrite one of its runs" in capsys.readouterr().err
    assert sha256_file(runs[0] / "model.keras") == before
    out = runs[0].parent.parent
    assert main(["soup", *map(str, runs), "--data", str(drawn_dataset), "--out", str(out), "--name", "../up"]) == 2
    assert "is not a model name" in capsys.readouterr().err and not (out.parent / "up").exists()
