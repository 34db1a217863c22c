"""When to give no class: images that are not a single blood cell, unlike the training cells, or unsure calls.

A classifier always answers one of its five classes, even for a photo of a
cat. Three checks stand between its answer and the user, in this order:

- the cell mask: no stained nucleus, several separate nuclei, no nucleus
  near the centre, or no colour at all (CellMask.problem). A fact about the
  pixels, not a guess of the model: "does not look like a single blood-cell
  image";
- an out-of-distribution score: the Mahalanobis distance of the image's
  penultimate features (the pooled last convolution) to the nearest class
  centre, with one covariance shared by the classes (Lee et al., 2018),
  fitted on the training split in a PCA space that keeps the distance
  stable with a few thousand images. The flagging threshold is a high
  quantile of the validation split's scores, so a known share of real cells
  is flagged (the cost) and far-away inputs are caught (the benefit). Since
  the mask has already accepted the image as one centred stained cell, a
  far score means "unlike the training images", not "not a cell": that is
  how a real cell photographed in another lab looks to the models
  (cellagreepair flags 114 of cross-source-dev's 300 neutrophils this way,
  and its best guess is right for all 114);
- the calibrated top probability: below a threshold the answer is "not
  confident".

Each flag withholds the class as a confident answer; the best guess is
still shown beside it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bloodcell.errors import BloodcellError

OOD_FILE = "ood.npz"
# Keep this many principal components of the penultimate features.
PCA_COMPONENTS = 48
# Share of validation images allowed above the threshold.
VALIDATION_QUANTILE = 0.995
# Below this calibrated top probability the answer is "not confident".
DEFAULT_MIN_CONFIDENCE = 0.70

OK = "ok"
NOT_CONFIDENT = "not confident"
NOT_A_CELL = "does not look like a single blood-cell image"
UNFAMILIAR = "unlike the training images"
# The verdicts that give no class, most serious first.
FLAGS = (NOT_A_CELL, UNFAMILIAR, NOT_CONFIDENT)
# What each verdict means, in the words the CLI and the app show.
VERDICT_HELP = {
    OK: "a single white blood cell, classified with confidence",
    NOT_CONFIDENT: "the calibrated top probability is below the threshold",
    UNFAMILIAR: "one centred stained cell whose features are far from every training image, so the "
                "answer may not carry over (photos from another lab often land here)",
    NOT_A_CELL: "no single centred stained cell (no nucleus, several cells, or a greyscale photo)",
}


@dataclass
class OutlierDetector:
    """Class-conditional Gaussian model of a classifier's penultimate features."""

    pca_mean: np.ndarray  # (d,)
    pca_components: np.ndarray  # (k, d)
    class_means: np.ndarray  # (classes, k)
    precision: np.ndarray  # (k, k)
    threshold: float

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, validation_features: np.ndarray,
            components: int = PCA_COMPONENTS, quantile: float = VALIDATION_QUANTILE) -> "OutlierDetector":
        """Fit on training features; set the threshold on validation features."""
        features = np.asarray(features, np.float64)
        labels = np.asarray(labels)
        if features.ndim != 2 or len(features) != len(labels) or len(features) < 2:
            raise ValueError("features must be (n, d) with one label per row and n >= 2")
        mean = features.mean(axis=0)
        _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
        basis = vt[: min(components, vt.shape[0])]
        projected = (features - mean) @ basis.T
        classes = np.unique(labels)
        class_means = np.stack([projected[labels == c].mean(axis=0) for c in classes])
        centred = projected - class_means[np.searchsorted(classes, labels)]
        covariance = centred.T @ centred / len(centred)
        # A little ridge keeps near-empty directions from dominating the distance.
        covariance += np.eye(len(covariance)) * 1e-3 * np.trace(covariance) / len(covariance)
        detector = cls(mean, basis, class_means, np.linalg.inv(covariance), np.inf)
        detector.threshold = float(np.quantile(detector.score(validation_features), quantile))
        return detector

    def score(self, features: np.ndarray) -> np.ndarray:
        """Distance to the nearest class centre (larger: further from the training data)."""
        projected = (np.atleast_2d(np.asarray(features, np.float64)) - self.pca_mean) @ self.pca_components.T
        differences = projected[:, None, :] - self.class_means[None]
        squared = np.einsum("nck,kl,ncl->nc", differences, self.precision, differences)
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def is_outlier(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, pca_mean=self.pca_mean, pca_components=self.pca_components,
                            class_means=self.class_means, precision=self.precision,
                            threshold=np.float64(self.threshold))
        Path(path).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "OutlierDetector":
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                return cls(data["pca_mean"], data["pca_components"], data["class_means"],
                           data["precision"], float(data["threshold"]))
        except FileNotFoundError:
            raise BloodcellError(f"missing file: {path}") from None
        except (OSError, KeyError, ValueError) as exc:
            raise BloodcellError(f"damaged out-of-distribution file {path}: {exc}") from None


def verdict(confidence: float, ood_score: float | None, threshold: float | None,
            cell_problem: str | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> str:
    """OK, NOT_CONFIDENT, UNFAMILIAR or NOT_A_CELL for one image.

    `cell_problem` is the cell mask's reason the image is not one centred
    white cell (bloodcell.cellmask.CellMask.problem), or None.
    """
    if cell_problem is not None:
        return NOT_A_CELL
    if ood_score is not None and threshold is not None and ood_score > threshold:
        return UNFAMILIAR
    if confidence < min_confidence:
        return NOT_CONFIDENT
    return OK


def verdict_reason(confidence: float, ood_score: float | None, threshold: float | None,
                   cell_problem: str | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> str:
    """Why `verdict` gives no class, in words ("" when it gives one).

    The CLI's CSV, the app's summary and its verdict box all say it this way,
    so a flag in a batch of hundreds can be understood without opening each image.
    """
    if cell_problem is not None:
        return cell_problem
    if ood_score is not None and threshold is not None and ood_score > threshold:
        return f"far from every training image (score {ood_score:.1f}, limit {threshold:.1f})"
    if confidence < min_confidence:
        return f"top probability {confidence:.0%} below {min_confidence:.0%}"
    return ""
