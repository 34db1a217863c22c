"""Load a trained model with its card, and turn images into probabilities.

Every consumer (evaluation, the CLI, the app) goes through `Classifier`, so
they share the model input size, the preprocessing and the class order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bloodcell.config import CLASS_NAMES, resolve_models_dir
from bloodcell.data import sha256_file
from bloodcell.errors import BloodcellError, ImageReadError
from bloodcell.imaging import ImageSource, load_model_input

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
BATCH_SIZE = 32


def resolve_model_dir(name_or_path: str, models_dir: str | Path | None = None) -> Path:
    """A model folder from a name in the models folder, or from a path."""
    candidate = Path(name_or_path)
    if (candidate / MODEL_FILE).is_file():
        return candidate
    folder = resolve_models_dir(models_dir) / name_or_path
    if not (folder / MODEL_FILE).is_file():
        raise BloodcellError(
            f"model '{name_or_path}' not found: {folder / MODEL_FILE} is missing "
            f"(train it with 'python -m bloodcell train --model {name_or_path}')"
        )
    return folder


def available_models(models_dir: str | Path | None = None) -> list[str]:
    """Names of the model folders that hold a model file and a card."""
    root = resolve_models_dir(models_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir()
        if (p / MODEL_FILE).is_file() and (p / CARD_FILE).is_file()
    )


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BloodcellError(f"missing file: {path}") from None
    except ValueError as exc:
        raise BloodcellError(f"damaged JSON file {path}: {exc}") from None


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class FilePrediction:
    """The outcome for one input: probabilities, or the reason it failed."""

    source: str
    probabilities: np.ndarray | None = None
    error: str | None = None
    classes: tuple[str, ...] = field(default=CLASS_NAMES)

    @property
    def predicted_class(self) -> str | None:
        if self.probabilities is None:
            return None
        return self.classes[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(np.max(self.probabilities))


class Classifier:
    """A trained model plus its card; `predict_proba` maps pixels to probabilities."""

    def __init__(self, model, card: dict, model_dir: Path | None = None):
        import keras

        self.model = model
        self.card = card
        self.model_dir = model_dir
        self.name: str = card.get("name", model.name)
        self.input_size: int = int(model.input_shape[1])
        self.classes: tuple[str, ...] = tuple(card.get("classes", CLASS_NAMES))
        if self.classes != CLASS_NAMES:
            raise BloodcellError(
                f"model '{self.name}' was trained on classes {self.classes}, expected {CLASS_NAMES}"
            )
        self.temperature: float = float(card.get("calibration", {}).get("temperature", 1.0))
        # One forward pass yields logits; probabilities are a softmax of them,
        # so temperature scaling needs no second model.
        self._logits_model = keras.Model(model.input, model.get_layer("logits").output)
        # Compiled once: an eager Keras call costs ~10x the arithmetic of one
        # 224-pixel image on two cores, and model.predict more still.
        import tensorflow as tf

        size = self.input_size
        self._forward = tf.function(
            lambda images: self._logits_model(images, training=False),
            input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
        )

    @classmethod
    def load(cls, name_or_path: str, models_dir: str | Path | None = None,
             verify_checksum: bool = True) -> "Classifier":
        import keras

        folder = resolve_model_dir(name_or_path, models_dir)
        card = read_json(folder / CARD_FILE)
        model_path = folder / MODEL_FILE
        expected = card.get("file_sha256")
        if verify_checksum and expected and sha256_file(model_path) != expected:
            raise BloodcellError(
                f"{model_path} does not match the sha256 in its model card; "
                "the file is damaged or was replaced"
            )
        try:
            model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        except Exception as exc:
            raise BloodcellError(f"could not load {model_path}: {type(exc).__name__}: {exc}") from None
        return cls(model, card, folder)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits for a batch of model inputs (N, size, size, 3), float32 0..255."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected images of shape (N, {self.input_size}, {self.input_size}, 3), "
                f"got {images.shape}"
            )
        outputs = [
            self._forward(images[start:start + BATCH_SIZE]).numpy()
            for start in range(0, len(images), BATCH_SIZE)
        ]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.classes)), np.float32)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return softmax(self.logits(images), self.temperature)

    def prepare(self, source: ImageSource) -> np.ndarray:
        return load_model_input(source, self.input_size)

    def predict_sources(self, sources: list[ImageSource], names: list[str] | None = None) -> list[FilePrediction]:
        """Predict many files; an unreadable one gets an error, the rest go on."""
        names = names or [str(s) for s in sources]
        results = [FilePrediction(name) for name in names]
        ready: list[int] = []
        inputs: list[np.ndarray] = []
        for index, source in enumerate(sources):
            try:
                inputs.append(self.prepare(source))
                ready.append(index)
            except ImageReadError as exc:
                results[index].error = str(exc)
            if len(inputs) == BATCH_SIZE or (index == len(sources) - 1 and inputs):
                for position, probs in zip(ready, self.predict_proba(np.stack(inputs))):
                    results[position].probabilities = probs
                ready, inputs = [], []
        return results
