"""Our metrics agree with scikit-learn's, including when classes are absent; the intervals with published values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from bloodcell.config import CLASS_NAMES
from bloodcell.metrics import (accuracy_interval, classification_metrics, format_confusion_matrix,
                              paired_difference_interval, wilson_interval)


@pytest.mark.parametrize("seed, classes_present", [(0, 5), (1, 5), (2, 2), (3, 1)])
def test_agrees_with_scikit_learn(seed, classes_present):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes_present, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 5, 200))
    ours = classification_metrics(y_true, y_pred)
    labels = list(range(len(CLASS_NAMES)))
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert ours["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for i, name in enumerate(CLASS_NAMES):
        row = ours["per_class"][name]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
    assert ours["n"] == 200 and ours["classes"] == list(CLASS_NAMES)


def test_confusion_matrix_text_has_all_classes():
    text = format_confusion_matrix(classification_metrics([0, 1, 4], [0, 2, 4])["confusion_matrix"])
    assert all(name in text for name in CLASS_NAMES)


# Wilson score intervals published by Newcombe (Stat Med 1998; 17: 857-872), Table II, method 3.
@pytest.mark.parametrize("successes, trials, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_published_values(successes, trials, low, high):
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_ends_exactly_at_the_extremes_and_widens_with_confidence():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    narrow, wide = wilson_interval(671, 675, 0.9), wilson_interval(671, 675, 0.99)
    assert wide[0] < narrow[0] < 671 / 675 < narrow[1] < wide[1]
    assert accuracy_interval(671 / 675, 675) == wilson_interval(671, 675)


def test_paired_difference_interval_matches_a_published_example():
    # Cavo et al. 2012 in Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables",
    # chapter 8: Newcombe's square-and-add interval -0.1186 to -0.0046 for an estimate of -0.0621.
    assert paired_difference_interval(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=5e-5)


def test_intervals_cover_the_true_rate_about_as_often_as_they_claim():
    rng = np.random.default_rng(0)
    # Our test split and our cross-source set. (Close to 0 or 1 with few errors, any interval's
    # coverage swings with the exact rate; Wilson's dips to about 92% at 99.4% of 675.)
    for rate, trials in ((0.98, 675), (0.59, 300)):
        hits = [low <= rate <= high for low, high in
                (wilson_interval(int(k), trials) for k in rng.binomial(trials, rate, 2000))]
        assert 0.93 <= np.mean(hits) <= 0.97
    trials = 675
    # Paired: images right in both, only the original, only the twin, neither.
    cells = np.array([0.965, 0.025, 0.004, 0.006])
    true_drop = cells[1] - cells[2]
    covered = []
    for counts in rng.multinomial(trials, cells, 2000):
        low, high = paired_difference_interval(*counts)
        covered.append(low <= true_drop <= high)
    assert 0.93 <= np.mean(covered) <= 0.98


@pytest.mark.parametrize("call", [lambda: wilson_interval(5, 0), lambda: wilson_interval(6, 5),
                                  lambda: wilson_interval(-1, 5), lambda: wilson_interval(2.5, 5),
                                  lambda: wilson_interval(1, 5, confidence=1.0),
                                  lambda: paired_difference_interval(0, 0, 0, 0),
                                  lambda: paired_difference_interval(1, -1, 0, 0)])
def test_intervals_reject_impossible_counts(call):
    with pytest.raises(ValueError):
        call()
