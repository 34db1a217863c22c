"""Classification metrics computed from the confusion matrix.

Rows are true classes and columns predicted classes, both in `CLASS_NAMES`
order, whatever subset of classes the evaluated folder holds.
"""

from __future__ import annotations

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
