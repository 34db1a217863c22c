"""Out-of-distribution detector and the verdict rules."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.abstention import (FLAGS, NOT_A_CELL, NOT_CONFIDENT, OK, UNFAMILIAR, VERDICT_HELP, OutlierDetector,
                                  verdict, verdict_reason)
from bloodcell.errors import BloodcellError


def clusters(rng, n=200, dims=20):
    centres = rng.normal(0, 5, (3, dims))
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(0, 1, (n, dims)), labels


def test_far_points_score_high_and_near_points_low():
    rng = np.random.default_rng(0)
    train, labels = clusters(rng)
    validation, _ = clusters(np.random.default_rng(0), n=200)
    detector = OutlierDetector.fit(train, labels, validation, components=10)
    assert detector.is_outlier(validation).mean() <= 0.02
    far = rng.normal(0, 1, (20, 20)) + 40
    assert detector.is_outlier(far).all()


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    train, labels = clusters(rng)
    detector = OutlierDetector.fit(train, labels, train, components=5)
    detector.save(tmp_path / "ood.npz")
    loaded = OutlierDetector.load(tmp_path / "ood.npz")
    np.testing.assert_allclose(loaded.score(train[:5]), detector.score(train[:5]))
    assert loaded.threshold == detector.threshold


def test_damaged_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(BloodcellError, match="missing"):
        OutlierDetector.load(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(BloodcellError, match="damaged"):
        OutlierDetector.load(tmp_path / "bad.npz")


def test_fit_rejects_mismatched_input():
    with pytest.raises(ValueError):
        OutlierDetector.fit(np.zeros((3, 4)), np.zeros(2), np.zeros((3, 4)))


def test_verdict_rules():
    assert verdict(0.95, 1.0, 5.0) == OK
    assert verdict(0.50, 1.0, 5.0) == NOT_CONFIDENT
    assert verdict(0.99, None, None) == OK
    assert verdict(0.99, 1.0, 5.0, cell_problem="no stained nucleus found") == NOT_A_CELL
    assert verdict(0.40, 1.0, 5.0, cell_problem="several cells in the image") == NOT_A_CELL


def test_a_single_cell_far_from_the_training_data_is_unfamiliar_not_a_non_cell():
    """Another lab's real cell passes the cell mask but its features lie far away: that is no reason to
    call it "not a cell". The mask's verdict wins over the distance, and the distance over the probability."""
    assert verdict(0.99, 9.0, 5.0) == UNFAMILIAR
    assert verdict(0.30, 9.0, 5.0) == UNFAMILIAR
    assert verdict(0.99, 9.0, 5.0, cell_problem="no stained nucleus found") == NOT_A_CELL
    assert set(FLAGS) | {OK} == set(VERDICT_HELP)


def test_each_verdict_without_a_class_says_why():
    assert verdict_reason(0.95, 1.0, 5.0) == ""
    assert verdict_reason(0.50, 1.0, 5.0) == "top probability 50% below 70%"
    assert verdict_reason(0.50, 1.0, 5.0, min_confidence=0.4) == ""
    assert verdict_reason(0.99, 9.0, 5.0) == "far from every training image (score 9.0, limit 5.0)"
    # The cell mask's reason comes first: it is a fact about the pixels, not a guess of the model.
    assert verdict_reason(0.40, 9.0, 5.0, cell_problem="several cells in the image") == "several cells in the image"
