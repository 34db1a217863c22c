"""Classification metrics computed from the confusion matrix.

Rows are true classes and columns predicted classes, both in `CLASS_NAMES`
order, whatever subset of classes the evaluated folder holds.

Also the intervals that say how far an accuracy measured on a few hundred
images can be trusted: 4 errors in 675 test images (99.41%) and 3 errors
(99.56%) are one image apart, and both intervals hold 99.5%.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from bloodcell.config import CLASS_NAMES


def confusion_matrix(y_true, y_pred, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return matrix


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=float),
                     where=denominator > 0)


def classification_metrics(y_true, y_pred, classes: tuple[str, ...] = CLASS_NAMES) -> dict:
    """Accuracy, macro F1 over the classes present, per-class scores, confusion matrix.

    Macro F1 averages over classes that occur in `y_true` or `y_pred`, as
    scikit-learn does with its default labels.
    """
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    true_positive = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(true_positive, predicted.astype(float))
    recall = _safe_divide(true_positive, support.astype(float))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)
    total = int(matrix.sum())
    return {
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": total,
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
    }


def format_confusion_matrix(matrix, classes: tuple[str, ...] = CLASS_NAMES) -> str:
    """Plain-text table, rows true and columns predicted."""
    short = [name[:8] for name in classes]
    width = max(8, max(len(str(v)) for row in matrix for v in row))
    header = "true \\ pred".ljust(15) + " ".join(s.rjust(width) for s in short)
    lines = [header]
    for name, row in zip(classes, matrix):
        lines.append(name.ljust(15) + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_count(name: str, value: int) -> int:
    if int(value) != value or value < 0:
        raise ValueError(f"{name} must be a whole number of at least 0, got {value}")
    return int(value)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Where the true rate probably lies, given `successes` out of `trials` (Wilson's score interval).

    Unlike the textbook p +- z*sqrt(p(1-p)/n) it stays within 0..1 and does
    not shrink to a point at 0 or `trials` successes, which matters for
    accuracies near 100%.
    """
    successes, trials = _check_count("successes", successes), _check_count("trials", trials)
    if trials == 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes} of {trials}")
    z = _z(confidence)
    rate = successes / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    # Exact ends at 0 and at `trials` successes (the formula gives them up to rounding).
    return (0.0 if successes == 0 else max(0.0, centre - half),
            1.0 if successes == trials else min(1.0, centre + half))


def accuracy_interval(accuracy: float, images: int, confidence: float = 0.95) -> tuple[float, float]:
    """`wilson_interval` for an accuracy stored as a fraction of `images`."""
    return wilson_interval(round(accuracy * images), images, confidence)


def paired_difference_interval(both: int, only_first: int, only_second: int, neither: int,
                               confidence: float = 0.95) -> tuple[float, float]:
    """Interval for rate(first) - rate(second) measured on the same items.

    For example the accuracy on original images minus that on their
    counterfactual twins: `only_first` items are right only in the first,
    `only_second` only in the second. Pairing makes it much narrower than
    two separate intervals would suggest, because most items agree.
    Newcombe's square-and-add interval for paired data (Stat Med 1998; 17:
    2635-2650, method 10), with its continuity-corrected correlation.
    """
    counts = [_check_count(name, value) for name, value in
              (("both", both), ("only_first", only_first), ("only_second", only_second), ("neither", neither))]
    a, b, c, d = counts
    n = a + b + c + d
    if n == 0:
        raise ValueError("need at least one pair")
    first, second = (a + b) / n, (a + c) / n
    low1, high1 = wilson_interval(a + b, n, confidence)
    low2, high2 = wilson_interval(a + c, n, confidence)
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    # The correlation of the two outcomes, with Newcombe's continuity
    # correction for a positive one; 0 when either outcome is constant.
    association = a * d - b * c
    if association > n / 2:
        association -= n / 2
    elif association > 0:
        association = 0
    phi = association / math.sqrt(denominator) if denominator else 0.0
    below = math.sqrt(max(0.0, (first - low1) ** 2 - 2 * phi * (first - low1) * (high2 - second)
                          + (high2 - second) ** 2))
    above = math.sqrt(max(0.0, (high1 - first) ** 2 - 2 * phi * (high1 - first) * (second - low2)
                          + (second - low2) ** 2))
    difference = first - second
    return max(-1.0, difference - below), min(1.0, difference + above)
