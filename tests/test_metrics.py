"""Our metrics agree with scikit-learn's, including when classes are absent."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from bloodcell.config import CLASS_NAMES
from bloodcell.metrics import classification_metrics, format_confusion_matrix


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
