"""A training run stopped after an epoch goes on from there when the same command runs again."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from bloodcell import cli
from bloodcell.resume import STATE_FILE, EpochSaver, TrainingCheckpoint, checkpoint_folder


def _stop_after(monkeypatch, epochs: int) -> None:
    """Every EpochSaver raises KeyboardInterrupt (a Ctrl-C) once it has saved epoch `epochs`."""
    save = EpochSaver.on_epoch_end

    def save_then_stop(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch + 1 == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochSaver, "on_epoch_end", save_then_stop)


def _record_restores(monkeypatch) -> list[dict]:
    """What each phase started from in this sitting: the model's weights and the optimizer's step count."""
    starts: list[dict] = []
    restore = EpochSaver.on_train_begin

    def restore_and_record(self, logs=None):
        restore(self, logs)
        starts.append({"phase": self.phase, "weights": self.model.get_weights(),
                       "iterations": int(self.model.optimizer.iterations.numpy())
                       if self.model.optimizer.built else 0})

    monkeypatch.setattr(EpochSaver, "on_train_begin", restore_and_record)
    return starts


def _train(name: str, data: Path, models_dir: Path, epochs: int = 3, **options) -> Path:
    from bloodcell.training import train

    return train(name, data, models_dir, epochs=epochs, image_size=32, batch_size=8, verbose=0, **options)


def _train_until_ctrl_c(monkeypatch, name: str, data: Path, models_dir: Path, stop_after: int, **options) -> dict:
    """Train `name` and stop it (a Ctrl-C) once epoch `stop_after` is saved; the checkpoint's state."""
    with monkeypatch.context() as patch:
        _stop_after(patch, stop_after)
        with pytest.raises(KeyboardInterrupt):
            _train(name, data, models_dir, **options)
    return json.loads((checkpoint_folder(models_dir, name) / STATE_FILE).read_text())


def _steps_per_epoch(models_dir: Path) -> int:
    split = json.loads((models_dir / "split.json").read_text())
    return int(np.ceil(split["sizes"]["train"] / 8))


def test_an_interrupted_run_goes_on_from_its_last_epoch_with_everything_restored(monkeypatch, drawn_dataset,
                                                                                  tmp_path):
    state = _train_until_ctrl_c(monkeypatch, "cnn", drawn_dataset, tmp_path, stop_after=2)
    folder = checkpoint_folder(tmp_path, "cnn")
    saved = state["phases"]["train"]
    assert saved["epochs_done"] == 2 and not saved["finished"]
    assert [row["epoch"] for row in saved["rows"]] == [1, 2]
    saved_weights = TrainingCheckpoint.open(folder, state["fingerprint"]).weights("train")

    starts = _record_restores(monkeypatch)
    out = _train("cnn", drawn_dataset, tmp_path)

    # The second sitting began exactly where the first stopped.
    assert [start["phase"] for start in starts] == ["train"]
    for restored, kept in zip(starts[0]["weights"], saved_weights, strict=True):
        np.testing.assert_array_equal(restored, kept)
    assert starts[0]["iterations"] == 2 * _steps_per_epoch(tmp_path)
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [{k: v for k, v in row.items() if k != "phase"} for row in history[:2]] == saved["rows"]
    card = json.loads((out / "card.json").read_text())
    assert card["resumed"]["after_epochs"] == [2] and "not bit-identical" in card["resumed"]["note"]
    assert card["epochs_run"] == 3 and card["training_seconds"] >= state["seconds"]
    assert not folder.exists()  # the model is written: the checkpoint is gone


def test_a_run_that_ran_straight_through_says_so_and_leaves_no_checkpoint(tiny_models_dir):
    card = json.loads((tiny_models_dir / "cnn" / "card.json").read_text())
    assert card["resumed"] is None
    assert not checkpoint_folder(tiny_models_dir, "cnn").exists()


def test_another_recipe_does_not_resume_a_checkpoint_it_did_not_write(monkeypatch, drawn_dataset, tmp_path,
                                                                       caplog):
    _train_until_ctrl_c(monkeypatch, "cnn", drawn_dataset, tmp_path, stop_after=1)
    starts = _record_restores(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="bloodcell"):
        out = _train("cnn", drawn_dataset, tmp_path, recipe_options={"learning_rate": 5e-4})
    assert "another recipe" in caplog.text
    assert starts[0]["iterations"] == 0  # a fresh optimizer: nothing was carried over
    assert json.loads((out / "card.json").read_text())["resumed"] is None
    assert not checkpoint_folder(tmp_path, "cnn").exists()


def test_a_finished_head_phase_is_not_trained_again(monkeypatch, drawn_dataset, imagenet_weights, tmp_path):
    """MobileNetV2 trains in two phases; stopped in the second, it resumes there and keeps the first's rows."""
    # Epoch 1 is the head phase, epoch 2 the first of fine-tuning.
    state = _train_until_ctrl_c(monkeypatch, "cellfocus", drawn_dataset, tmp_path, stop_after=2,
                                base_weights=str(imagenet_weights))
    assert state["phases"]["head"]["finished"] and state["phases"]["fine_tune"]["epochs_done"] == 2

    # The same weights from another place (a moved checkout) are the same run.
    moved = tmp_path / "moved" / imagenet_weights.name
    moved.parent.mkdir()
    shutil.copyfile(imagenet_weights, moved)
    starts = _record_restores(monkeypatch)
    out = _train("cellfocus", drawn_dataset, tmp_path, base_weights=str(moved))
    assert [start["phase"] for start in starts] == ["fine_tune"]
    assert starts[0]["iterations"] == _steps_per_epoch(tmp_path)  # one fine-tuning epoch's steps
    history = json.loads((out / "history.json").read_text())
    assert [(row["epoch"], row["phase"]) for row in history] == [(1, "head"), (2, "fine_tune"), (3, "fine_tune")]
    assert history[0]["val_loss"] == state["phases"]["head"]["rows"][0]["val_loss"]


def test_the_cli_says_how_to_go_on_after_a_ctrl_c(monkeypatch, drawn_dataset, tmp_path, capsys):
    _stop_after(monkeypatch, 1)
    code = cli.main(["--quiet", "train", "--model", "cnn", "--data", str(drawn_dataset), "--out", str(tmp_path),
                     "--epochs", "2", "--image-size", "32", "--batch-size", "8"])
    assert code == cli.EXIT_INTERRUPTED
    message = capsys.readouterr().err
    assert "run the same command again" in message and str(checkpoint_folder(tmp_path, "cnn")) in message


def test_an_unreadable_checkpoint_starts_the_run_over(tmp_path, caplog):
    folder = checkpoint_folder(tmp_path, "cnn")
    folder.mkdir()
    (folder / STATE_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="bloodcell"):
        checkpoint = TrainingCheckpoint.open(folder, {"model": "cnn"})
    assert "cannot be read" in caplog.text
    assert checkpoint.epochs_done() == 0 and checkpoint.resumed_after_epochs == []


def test_a_checkpoint_that_does_not_fit_the_network_is_a_clear_error(monkeypatch, drawn_dataset, tmp_path):
    from bloodcell.errors import BloodcellError

    state = _train_until_ctrl_c(monkeypatch, "cnn", drawn_dataset, tmp_path, stop_after=1)
    folder = checkpoint_folder(tmp_path, "cnn")
    with open(folder / state["phases"]["train"]["optimizer"], "wb") as handle:
        np.savez(handle, np.zeros(3))  # as if the network had changed since
    with pytest.raises(BloodcellError, match="does not fit this network"):
        _train("cnn", drawn_dataset, tmp_path)
