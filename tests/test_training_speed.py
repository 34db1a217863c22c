"""The training-speed benchmark times the pipeline and both training phases, and refuses what it cannot time."""

from __future__ import annotations

import re
import sys

import pytest

from benchmarks import training_speed


def run(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["training_speed", *args])
    training_speed.main()


def test_prints_each_part_of_an_epoch(drawn_dataset, imagenet_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BLOODCELL_DATA", str(drawn_dataset))
    monkeypatch.setenv("BLOODCELL_MODELS", str(tmp_path))
    monkeypatch.setenv("BLOODCELL_IMAGENET_WEIGHTS", str(imagenet_weights))
    run(monkeypatch, "--model", "cellfocus", "--images", "16", "--steps", "1", "--image-size", "32",
        "--batch-size", "8")
    out = capsys.readouterr().out
    assert "cellfocus at 32 pixels, 16 training photos, batches of 8" in out
    figures = {label: float(value) for label, value in
               re.findall(r"^(first pass|later passes|training step, head phase|training step, fine-tuning)"
                          r"\D*([\d.]+)", out, flags=re.MULTILINE)}
    assert len(figures) == 4 and all(value > 0 for value in figures.values()), out
    stages = dict(re.findall(r"^  (.+): ([\d.]+) s$", out, flags=re.MULTILINE))
    assert set(stages) == {"flips, quarter turns, rotation, zoom, shift", "colour and focus"}, out
    assert re.search(r"an epoch of the full split \(\d+ batches\) takes at least [\d.]+ min", out)


@pytest.mark.parametrize("args, message", [
    (["--images", "4", "--batch-size", "8"], "--images must be at least the batch size"),
    (["--set", "no_such_option=1"], "--set takes KEY=VALUE"),
])
def test_refuses_what_it_cannot_time(args, message, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run(monkeypatch, *args)
    assert message in capsys.readouterr().err


def test_missing_dataset_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOODCELL_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("BLOODCELL_MODELS", str(tmp_path / "models"))
    with pytest.raises(SystemExit, match="^error: "):
        run(monkeypatch, "--model", "cnn", "--images", "8", "--batch-size", "8", "--image-size", "32")


def test_times_the_pipeline_and_network_that_training_builds(drawn_dataset, tmp_path, monkeypatch):
    """A consistency recipe is timed on its paired batches (views, then their twins) and with its own loss."""
    from bloodcell.consistency import TwinConsistencyModel
    from bloodcell.models import build_model
    from bloodcell.training import RECIPES, fitted_network

    monkeypatch.setenv("BLOODCELL_DATA", str(drawn_dataset))
    monkeypatch.setenv("BLOODCELL_MODELS", str(tmp_path))
    recipe = {**RECIPES["celltwin"], "twin_share": 0.0, "twin_consistency": 12.0, "batch_size": 4}
    dataset, _ = training_speed.training_dataset("celltwin", recipe, images=8, size=32)
    images, labels = next(iter(dataset))
    assert images.shape[0] == 8 and list(labels[:4].numpy()) == list(labels[4:].numpy())
    assert isinstance(fitted_network(build_model("cnn", 32), recipe), TwinConsistencyModel)


def test_a_recipe_that_does_not_go_together_is_one_line(drawn_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BLOODCELL_DATA", str(drawn_dataset))
    monkeypatch.setenv("BLOODCELL_MODELS", str(tmp_path))
    with pytest.raises(SystemExit, match="^error: celltwin's recipe with --set: .*not both"):
        run(monkeypatch, "--model", "celltwin", "--set", "twin_consistency=12", "--images", "8",
            "--batch-size", "8", "--image-size", "32")
