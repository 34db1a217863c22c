"""The look-swap habit quoted on the Predict page: counted on written-down guesses, and run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.look_swap import habit, main


def test_habit_counts_images_whose_guess_survives_both_looks():
    guesses = np.array([["basophil", "basophil", "basophil"],
                        ["monocyte", "monocyte", "myeloblast"],
                        ["myeloblast", "myeloblast", "myeloblast"]])
    labels = np.array(["basophil", "monocyte", "monocyte"])
    kept, accuracies = habit(guesses, labels)
    assert kept == pytest.approx(2 / 3)
    assert accuracies == pytest.approx([2 / 3, 2 / 3, 1 / 3])


def test_the_benchmark_prints_a_row_per_model(capsys, monkeypatch, real_data, shipped_models):
    from bloodcell.config import DATA_ENV, MODELS_ENV

    monkeypatch.setenv(DATA_ENV, str(real_data))
    monkeypatch.setenv(MODELS_ENV, str(shipped_models))
    main(["--images", "3", "--models", "cellfocus"])
    out = capsys.readouterr().out
    assert "3 test cells rendered in 2 looks" in out
    row = next(line for line in out.splitlines() if line.startswith("| cellfocus |"))
    assert row.count("%") == 4
