"""Temperature scaling recovers a known temperature and lowers the ECE."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.calibration import calibration_report, fit_temperature, reliability
from bloodcell.inference import softmax


def sample_overconfident(n: int, true_temperature: float, seed: int):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 2.0, (n, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    return true_logits * true_temperature, labels  # logits `true_temperature` times too sharp


def test_recovers_the_temperature():
    logits, labels = sample_overconfident(4000, 3.0, 0)
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.1)


def test_report_shows_lower_ece_after():
    val = sample_overconfident(3000, 2.5, 1)
    test = sample_overconfident(3000, 2.5, 2)
    report = calibration_report(*val, *test)
    assert report["test"]["ece_after"] < report["test"]["ece_before"] / 2
    assert report["test"]["nll_after"] < report["test"]["nll_before"]


def test_reliability_of_perfect_predictions():
    probabilities = np.eye(5)[[0, 1, 2, 3, 4]]
    result = reliability(probabilities, np.arange(5))
    assert result["ece"] == pytest.approx(0.0)
    assert sum(row["count"] for row in result["bins"]) == 5


def test_perfect_validation_split_does_not_drive_temperature_to_zero():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 600)
    logits = rng.normal(0, 1, (600, 5))
    logits[np.arange(600), labels] += 12.0  # every prediction right and confident
    temperature = fit_temperature(logits, labels)
    assert 0.4 < temperature <= 1.0
