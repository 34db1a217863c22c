"""Load a trained model with its card, and turn images into probabilities.

Every consumer (evaluation, the CLI, the app) goes through `Classifier`, so
they share the model input size, the preprocessing and the class order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bloodcell.abstention import DEFAULT_MIN_CONFIDENCE, OOD_FILE, OutlierDetector, verdict, verdict_reason
from bloodcell.config import CLASS_NAMES, PAIRED_MODELS, RECIPE_MODELS, ROUTED_MODELS, resolve_models_dir
from bloodcell.data import sha256_file
from bloodcell.errors import BloodcellError, ImageReadError
from bloodcell.framing import Framing, frame_photo
from bloodcell.imaging import FULL_VIEW, VIEW_DESCRIPTIONS, ImageSource, read_image, to_model_input
from bloodcell.runtime import AUTO, KERAS, LITE, LITE_FILE, RUNTIMES, KerasRunner, LiteRunner, lite_available

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
BATCH_SIZE = 32


def is_model_folder(folder: Path) -> bool:
    """A trained model (model file and card), or a pair of them (a card naming its members)."""
    card = folder / CARD_FILE
    if (folder / MODEL_FILE).is_file() and card.is_file():
        return True
    try:
        return card.is_file() and combines_models(json.loads(card.read_text()))
    except (OSError, ValueError):
        return False


def combines_models(card: dict) -> bool:
    """Whether a card is a pair's or a cascade's: models combined, with no network of their own."""
    return bool(card.get("pair") or card.get("route"))


def resolve_model_dir(name_or_path: str, models_dir: str | Path | None = None) -> Path:
    """A model folder from a name in the models folder, or from a path."""
    candidate = Path(name_or_path)
    if is_model_folder(candidate):
        return candidate
    folder = resolve_models_dir(models_dir) / name_or_path
    if not is_model_folder(folder):
        if name_or_path in PAIRED_MODELS:
            recipe = PAIRED_MODELS[name_or_path]
            blend = f" --within-blend {recipe.within_blend:g}" if recipe.within_blend else ""
            raise BloodcellError(
                f"model '{name_or_path}' not found: {folder / CARD_FILE} is missing (build it from its trained "
                f"members with 'python -m bloodcell pair --between {recipe.between} --within {recipe.within} "
                f"--name {name_or_path}{blend}')")
        if name_or_path in ROUTED_MODELS:
            recipe = ROUTED_MODELS[name_or_path]
            raise BloodcellError(
                f"model '{name_or_path}' not found: {folder / CARD_FILE} is missing (build it from its two shipped "
                f"models with 'python -m bloodcell route --primary {recipe.primary} --fallback {recipe.fallback} "
                f"--name {name_or_path}')")
        if name_or_path in RECIPE_MODELS:
            raise BloodcellError(f"model '{name_or_path}' not found: {folder / MODEL_FILE} is missing (it is "
                                 f"{RECIPE_MODELS[name_or_path]})")
        raise BloodcellError(
            f"model '{name_or_path}' not found: {folder / MODEL_FILE} is missing "
            f"(train it with 'python -m bloodcell train --model {name_or_path}')"
        )
    return folder


def available_models(models_dir: str | Path | None = None) -> list[str]:
    """Names of the model folders that hold a model file and a card (or a pair's card)."""
    root = resolve_models_dir(models_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_model_folder(p))


def _check_file(path: Path, expected_sha256: str | None, verify: bool) -> None:
    if not path.is_file():
        raise BloodcellError(f"missing file: {path}")
    if verify and expected_sha256 and sha256_file(path) != expected_sha256:
        raise BloodcellError(
            f"{path} does not match the sha256 in its model card; the file is damaged or was replaced"
        )


def load_keras(folder: Path, card: dict, verify_checksum: bool):
    """The Keras network of a model folder, its file checked against the card's checksum."""
    import keras

    model_path = folder / MODEL_FILE
    _check_file(model_path, card.get("file_sha256"), verify_checksum)
    try:
        return keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:
        raise BloodcellError(f"could not load {model_path}: {type(exc).__name__}: {exc}") from None


def load_outlier_detector(folder: Path, card: dict, verify_checksum: bool = True) -> OutlierDetector | None:
    """The outlier detector the card names, checked against its sha256; None when it has none."""
    ood = card.get("ood")
    if not ood:
        return None
    path = folder / ood.get("file", OOD_FILE)
    _check_file(path, ood.get("sha256"), verify_checksum)
    return OutlierDetector.load(path)


def last_conv_layer(model) -> str:
    """The last layer with a spatial (4-D) output: what Grad-CAM explains."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.ReLU)) and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError("model has no convolutional layer to explain")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BloodcellError(f"missing file: {path}") from None
    except ValueError as exc:
        raise BloodcellError(f"damaged JSON file {path}: {exc}") from None


# Test-time augmentation. "flips": the image, its left-right and up-down
# mirrors and both (a cell has no up or down; training already flips).
# "flips and focus": those four views, each at both labs' typical fine detail
# (bloodcell.cellview.focus_to and LAB_VIEW_DETAIL), so the scanner's own
# sharpness no longer reaches the model: eight views in all.
TTA_FLIPS = "flips"
TTA_FLIPS_FOCUS = "flips and focus"
TEST_TIME_AUGMENTATIONS = (TTA_FLIPS, TTA_FLIPS_FOCUS)
TTA_VIEWS = 4


def flip_views(images: np.ndarray) -> np.ndarray:
    """(N, H, W, ...) -> (4N, H, W, ...): all images, then their three mirror images."""
    return np.concatenate([images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]])


def unflip_maps(maps: np.ndarray) -> np.ndarray:
    """(4N, h, w, ...) maps of flip_views' images -> (4, N, h, w, ...) in the original orientation."""
    parts = np.split(maps, TTA_VIEWS)
    return np.stack([parts[0], parts[1][:, :, ::-1], parts[2][:, ::-1], parts[3][:, ::-1, ::-1]])


def average_views(values: np.ndarray) -> np.ndarray:
    """(4N, ...) outputs of flip_views' images -> (N, ...) averaged over the four views."""
    return np.stack(np.split(values, TTA_VIEWS)).mean(axis=0)


def focus_levels(images: np.ndarray, test_time_augmentation: str | None) -> list[np.ndarray]:
    """The batch as the model sees it before the mirrors: as it is, or at each lab's fine detail."""
    if test_time_augmentation != TTA_FLIPS_FOCUS:
        return [images]
    from bloodcell.cellview import LAB_VIEW_DETAIL, focus_to

    return [focus_to(images, level) for level in sorted(LAB_VIEW_DETAIL.values())]


@dataclass
class Forward:
    """One forward pass over a batch, test-time views already combined."""

    features: np.ndarray  # (N, k) pooled penultimate features
    logits: np.ndarray  # (N, classes)
    class_maps: np.ndarray  # (views, N, h, w, classes), each view's maps in the image's orientation
    # (N,) which of a cascade's models answered each image (bloodcell.routing); None for any other model
    answered_by: np.ndarray | None = None


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
    ood_score: float | None = None  # distance from the training data (None: no detector)
    ood_threshold: float | None = None
    cell_problem: str | None = None  # why the cell mask sees no single centred cell
    # the photo's magnification: its lone red cells' median diameter over its
    # shorter side (bloodcell.redcells); None when it has none
    red_cell_size: float | None = None
    # how much closer the models saw the cell than the photo shows it: above 1
    # when the photo was cropped to the training magnification (bloodcell.framing)
    zoom: float = 1.0
    # which of a cascade's models gave these probabilities (bloodcell.routing); None for any other model
    answered_by: str | None = None

    def verdict(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> str | None:
        """OK, not confident, unlike the training images, or not a single blood cell (bloodcell.abstention)."""
        if self.probabilities is None:
            return None
        return verdict(self.confidence, self.ood_score, self.ood_threshold, self.cell_problem,
                       min_confidence)

    def reason(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> str:
        """Why the verdict gives no class ("" when it gives one, or the image was unreadable)."""
        if self.probabilities is None:
            return ""
        return verdict_reason(self.confidence, self.ood_score, self.ood_threshold, self.cell_problem,
                              min_confidence)

    @property
    def predicted_class(self) -> str | None:
        if self.probabilities is None:
            return None
        return self.classes[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(np.max(self.probabilities))


class Classifier:
    """A trained model plus its card; `predict_proba` maps pixels to probabilities.

    The network runs in Keras or, when the model folder holds its converted
    `model.tflite` and ai-edge-litert is installed, in LiteRT (see
    bloodcell.runtime); both give the same numbers. The Keras model itself is
    loaded only when something needs it (tf-keras-vis' methods).
    """

    # One network: every heatmap method applies (a pair of networks has Grad-CAM only).
    single_network: bool = True

    def __init__(self, model, card: dict, model_dir: Path | None = None, runner=None):
        self._model = model
        self.card = card
        self.model_dir = model_dir
        self.name: str = card.get("name") or model.name
        self.input_size: int = int(card.get("input_size") or model.input_shape[1])
        self.classes: tuple[str, ...] = tuple(card.get("classes", CLASS_NAMES))
        if self.classes != CLASS_NAMES:
            raise BloodcellError(
                f"model '{self.name}' was trained on classes {self.classes}, expected {CLASS_NAMES}"
            )
        self.temperature: float = float(card.get("calibration", {}).get("temperature", 1.0))
        # What the model sees: the whole image, or the cell view.
        self.view: str = card.get("view", FULL_VIEW)
        self.outlier_detector: OutlierDetector | None = None
        # Test-time augmentation: the model sees each image and its mirror
        # images (and with focus, each at two detail levels), and the logits
        # and features are averaged (see flip_views and focus_levels).
        self.test_time_augmentation: str | None = card.get("test_time_augmentation")
        if self.test_time_augmentation not in (None, *TEST_TIME_AUGMENTATIONS):
            raise BloodcellError(f"model '{self.name}' asks for an unknown test-time augmentation "
                                 f"{self.test_time_augmentation!r} (known: {', '.join(TEST_TIME_AUGMENTATIONS)})")
        self.test_time_flips: bool = self.test_time_augmentation in TEST_TIME_AUGMENTATIONS
        self.layer_name: str = card.get("last_conv_layer") or last_conv_layer(self.model)
        self.runner = runner or KerasRunner(model, self.layer_name)

    @property
    def model(self):
        """The Keras model (loaded on first use when the classifier runs in LiteRT)."""
        if self._model is None:
            self._model = load_keras(self.model_dir, self.card, verify_checksum=True)
        return self._model

    @property
    def runtime(self) -> str:
        return self.runner.name

    @property
    def view_description(self) -> str | None:
        """What the model sees, in words (bloodcell.imaging.VIEW_DESCRIPTIONS)."""
        return VIEW_DESCRIPTIONS.get(self.view)

    @classmethod
    def load(cls, name_or_path: str, models_dir: str | Path | None = None,
             verify_checksum: bool = True, runtime: str = AUTO,
             load_member: Callable[[str], "Classifier"] | None = None) -> "Classifier":
        """Load a model folder; `runtime` is "keras", "lite" or "auto" (LiteRT when it can).

        For a pair, `load_member` (a member's folder name -> its Classifier)
        lets a caller that already holds the members share them.
        """
        if runtime not in RUNTIMES:
            raise BloodcellError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        folder = resolve_model_dir(name_or_path, models_dir)
        card = read_json(folder / CARD_FILE)
        if card.get("pair"):
            from bloodcell.pairing import load_pair

            return load_pair(folder, card, verify_checksum, runtime, load_member)
        if card.get("route"):
            from bloodcell.routing import load_route

            return load_route(folder, card, verify_checksum, runtime, load_member)
        lite = card.get("lite")
        lite_path = folder / (lite or {}).get("file", LITE_FILE)
        if lite and (lite.get("source_sha256") != card.get("file_sha256") or not lite_path.is_file()):
            lite = None  # converted from an older model.keras, or deleted: Keras serves instead
        if runtime == LITE and not (lite and lite_available()):
            raise BloodcellError(
                f"{folder.name} cannot run in LiteRT: " + (
                    "install ai-edge-litert" if lite else
                    f"no current {LITE_FILE} (make one with 'python -m bloodcell export --model {folder.name}')"))
        if runtime != KERAS and lite and lite_available():
            # The .keras file is checked too: it is the source of truth, and
            # tf-keras-vis' methods load it later.
            _check_file(folder / MODEL_FILE, card.get("file_sha256"), verify_checksum)
            _check_file(lite_path, lite.get("sha256"), verify_checksum)
            classifier = cls(None, card, folder, runner=LiteRunner(lite_path))
        else:
            classifier = cls(load_keras(folder, card, verify_checksum), card, folder)
        classifier.outlier_detector = load_outlier_detector(folder, card, verify_checksum)
        return classifier

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits for a batch of model inputs (N, size, size, 3), float32 0..255."""
        return self.forward(images).logits

    def features_and_logits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features and logits for a batch of model inputs."""
        result = self.forward(images)
        return result.features, result.logits

    def forward(self, images: np.ndarray) -> Forward:
        """Features, logits and class maps for a batch of model inputs, in batches of BATCH_SIZE."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected images of shape (N, {self.input_size}, {self.input_size}, 3), "
                f"got {images.shape}"
            )
        if len(images) == 0:
            # The output shapes come from one blank image.
            blank = self._forward(np.zeros((1, *images.shape[1:]), np.float32))
            return Forward(blank.features[:0], blank.logits[:0], blank.class_maps[:, :0],
                           None if blank.answered_by is None else blank.answered_by[:0])
        parts = [self._forward(images[start:start + BATCH_SIZE]) for start in range(0, len(images), BATCH_SIZE)]
        return Forward(
            features=np.concatenate([p.features for p in parts]),
            logits=np.concatenate([p.logits for p in parts]),
            class_maps=np.concatenate([p.class_maps for p in parts], axis=1),  # axis 0 holds the views
            answered_by=None if parts[0].answered_by is None else np.concatenate([p.answered_by for p in parts]),
        )

    def _forward(self, images: np.ndarray) -> Forward:
        if not self.test_time_flips:
            features, logits, maps = self.runner(images)
            return Forward(features, logits, maps[None])
        # One run of the four mirror views per detail level, then the mean over all.
        runs = [self.runner(flip_views(level)) for level in focus_levels(images, self.test_time_augmentation)]
        return Forward(np.mean([average_views(features) for features, _, _ in runs], axis=0),
                       np.mean([average_views(logits) for _, logits, _ in runs], axis=0),
                       np.concatenate([unflip_maps(maps) for _, _, maps in runs]))

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return softmax(self.logits(images), self.temperature)

    def prepare(self, source: ImageSource) -> np.ndarray:
        """The model input for one file, as `predict_sources` makes it (framed: bloodcell.framing)."""
        framing = frame_photo(read_image(source))
        return to_model_input(framing.image, self.input_size, self.view, framing.mask)

    def ood_scores(self, features: np.ndarray) -> np.ndarray | None:
        """Out-of-distribution scores of penultimate features, or None without a detector."""
        return None if self.outlier_detector is None else self.outlier_detector.score(features)

    def assess(self, name: str, image, model_input: np.ndarray | None = None,
               framing: Framing | None = None) -> FilePrediction:
        """Probabilities, out-of-distribution score and cell check for one decoded image.

        `framing`, when given, must be `frame_photo(image)` (finding the cell
        and measuring the red cells again would give the same); `model_input`,
        when given, must come from its image.
        """
        framing = framing or frame_photo(image)
        if model_input is None:
            model_input = to_model_input(framing.image, self.input_size, self.view, framing.mask)
        result = self.forward(model_input[None])
        return self._prediction(name, result, 0, framing)

    def _prediction(self, name: str, result: Forward, index: int, framing: Framing) -> FilePrediction:
        """The FilePrediction of image `index` of a forward pass."""
        scores = self.ood_scores(result.features[index][None])
        return FilePrediction(
            name, softmax(result.logits[index][None], self.temperature)[0],
            ood_score=None if scores is None else float(scores[0]),
            ood_threshold=None if self.outlier_detector is None else self.outlier_detector.threshold,
            cell_problem=framing.mask.problem, red_cell_size=framing.red_cell_size, zoom=framing.zoom,
            answered_by=None if result.answered_by is None else str(result.answered_by[index]),
        )

    def predict_sources(self, sources: list[ImageSource], names: list[str] | None = None) -> list[FilePrediction]:
        """Predict many files; an unreadable one gets an error, the rest go on."""
        names = names or [str(s) for s in sources]
        results = [FilePrediction(name) for name in names]
        ready: list[int] = []
        inputs: list[np.ndarray] = []
        framings: list[Framing] = []
        for index, source in enumerate(sources):
            try:
                framing = frame_photo(read_image(source))
                inputs.append(to_model_input(framing.image, self.input_size, self.view, framing.mask))
                framings.append(framing)
                ready.append(index)
            except ImageReadError as exc:
                results[index].error = str(exc)
            if len(inputs) == BATCH_SIZE or (index == len(sources) - 1 and inputs):
                result = self.forward(np.stack(inputs))
                for index, (position, framing) in enumerate(zip(ready, framings)):
                    results[position] = self._prediction(names[position], result, index, framing)
                ready, inputs, framings = [], [], []
        return results
