"""Figures build from the JSON files training writes."""

from __future__ import annotations

import numpy as np

from bloodcell.charts import (DROP_AXIS_MAX, audit_figure, confusion_figure, counts_figure, history_figure, interval_figure,
                              mean_colour_figure, probability_figure, reliability_figure)
from bloodcell.calibration import calibration_report

HISTORY = [
    {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "learning_rate": 1e-3, "phase": "head"},
    {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7, "learning_rate": 1e-4, "phase": "fine_tune"},
]


def test_history_figure_has_train_val_and_learning_rate():
    figure = history_figure(HISTORY, "loss", best_epoch=2)
    names = [trace.name for trace in figure.data]
    # The best epoch and the fine-tune shading are named in the legend, not written over the curves.
    assert names == ["train loss", "validation loss", "learning rate", "best epoch 2", "fine-tune (shaded)"]
    assert list(figure.data[1].y) == [1.1, 0.6]
    assert not figure.layout.annotations


def test_history_figure_of_averaged_runs_draws_each_run_and_its_best_epoch():
    second = [{**row, "val_loss": row["val_loss"] + (0.5 if row["epoch"] == 2 else 0), "run": 2}
              for row in HISTORY] + [{**HISTORY[1], "epoch": 3, "val_loss": 0.9, "run": 2}]
    figure = history_figure([{**row, "run": 1} for row in HISTORY] + second, "loss")
    names = [trace.name for trace in figure.data]
    assert names == ["run 1: train loss", "run 1: validation loss", "run 1: learning rate", "run 1 best epoch 2",
                     "run 2: train loss", "run 2: validation loss", "run 2: learning rate", "run 2 best epoch 3",
                     "fine-tune (shaded)"]
    assert list(figure.data[5].x) == [1, 2, 3] and list(figure.data[5].y) == [1.1, 1.1, 0.9]
    # Run 1 kept epoch 2; run 2's fine-tune phase is lowest at epoch 3.
    assert [shape.x0 for shape in figure.layout.shapes if shape.type == "line"] == [2, 3]


def test_confusion_figure_normalises_rows():
    matrix = [[8, 2, 0, 0, 0], [0, 10, 0, 0, 0], [0, 0, 5, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 9]]
    values = np.asarray(confusion_figure(matrix, normalise=True).data[0].z)
    assert np.allclose(values[0], [0.8, 0.2, 0, 0, 0]) and np.allclose(values[3], 0)


def test_other_figures_build():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 5)) * 3, rng.integers(0, 5, 50)
    assert len(reliability_figure(calibration_report(logits, labels, logits, labels)).data) == 3
    assert len(probability_figure([0.1, 0.2, 0.3, 0.2, 0.2], highlight=2, threshold=0.7).data[0].x) == 5
    assert counts_figure({"basophil": 2, "unsure": 1}).data[0].y == (2, 1)
    assert len(mean_colour_figure({"monocyte": (np.array([200, 180, 190]), np.zeros(3))}).data) == 1


def test_probability_figure_can_use_short_names_for_narrow_columns():
    from bloodcell.charts import probability_figure

    full = probability_figure([0.1, 0.2, 0.3, 0.1, 0.3])
    short = probability_figure([0.1, 0.2, 0.3, 0.1, 0.3], short_names=True)
    assert "Segmented neutrophil" in full.data[0].y
    assert "Seg. neutrophil" in short.data[0].y and len(max(short.data[0].y, key=len)) <= 15


def test_probabilities_near_certainty_are_never_rounded_to_it():
    from bloodcell.charts import probability_text

    assert probability_text(0.99996) == "> 99.9%" and probability_text(0.99949) == "99.9%"
    assert probability_text(0.00004) == "< 0.1%" and probability_text(0.0005) == "0.1%"
    assert probability_text(0.5) == "50.0%"
    assert probability_text(0.996, 0) == "> 99%" and probability_text(0.994, 0) == "99%"
    bars = probability_figure([0.99996, 0.00001, 0.00001, 0.00001, 0.00001])
    assert list(bars.data[0].text) == ["> 99.9%"] + ["< 0.1%"] * 4


def test_table_percentages_stay_off_certainty_at_their_shown_precision():
    from bloodcell.charts import probability_points

    shown = [f"{probability_points(p):.1f}" for p in (0.99996, 1.0, 0.9994, 0.5, 0.00004, 0.0)]
    assert shown == ["99.9", "99.9", "99.9", "50.0", "0.1", "0.1"]
    assert f"{probability_points(0.996, 0):.0f}" == "99"


def test_interval_figure_draws_each_interval_and_keeps_huge_drops_on_the_edge():
    rows = [
        {"model": "cell", "test accuracy": 0.9956, "test low": 0.987, "test high": 0.9985, "drop (points)": 2.5,
         "drop low": 1.3, "drop high": 3.9, "cross-source accuracy": 0.27, "cross-source low": 0.23,
         "cross-source high": 0.33},
        {"model": "whole", "test accuracy": 0.9956, "test low": 0.987, "test high": 0.9985, "drop (points)": 77.5,
         "drop low": 74.0, "drop high": 80.6, "cross-source accuracy": None, "cross-source low": None,
         "cross-source high": None},
        {"model": "old audit", "test accuracy": 0.99, "test low": 0.98, "test high": 0.995, "drop (points)": 3.0,
         "drop low": None, "drop high": None, "cross-source accuracy": 0.5, "cross-source low": 0.44,
         "cross-source high": 0.56},
    ]
    figure = interval_figure(rows)
    test, beyond, drop, cross, *legend = figure.data
    assert [trace.name for trace in legend] == ["target", "measured, with its 95% interval"]
    assert list(test.y) == ["cell", "whole", "old audit"]
    assert test.x[0] == 99.56 and np.allclose([test.error_x.arrayminus[0], test.error_x.array[0]], [0.86, 0.29])
    assert list(beyond.y) == ["whole"] and list(beyond.x) == [DROP_AXIS_MAX] and list(beyond.text) == ["78"]
    assert list(drop.y) == ["cell", "old audit"] and drop.error_x.array[1] == 0 and drop.error_x.arrayminus[1] == 0
    assert list(cross.y) == ["cell", "old audit"]
    targets = sorted(shape.x0 for shape in figure.layout.shapes)
    assert targets == [2.0, 90.0, 99.5]


def test_audit_figure_hatches_only_the_counterfactual_bar_of_a_model_trained_on_twins():
    rows = [{"model": "plain", "test accuracy": 0.99, "counterfactual accuracy": 0.97, "cross-source accuracy": 0.3,
             "trained on twins": False},
            {"model": "twins", "test accuracy": 0.99, "counterfactual accuracy": 0.99, "cross-source accuracy": 0.8,
             "trained on twins": True}]
    test, counterfactual, cross = audit_figure(rows).data
    assert list(counterfactual.marker.pattern.shape) == ["", "/"]
    assert list(counterfactual.text) == ["97.0%", "99.0%*"]
    assert list(test.marker.pattern.shape) == ["", ""] and list(cross.text) == ["30.0%", "80.0%"]
