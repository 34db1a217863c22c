"""Where the model looks: Grad-CAM, and tf-keras-vis' methods.

Grad-CAM comes with the prediction: our heads are global average pooling and
a Dense layer, so the gradient of a class's logit is that class's weight
column at every position of the last feature map, and Grad-CAM is the
feature map weighted by it. The serving function (bloodcell.runtime) returns
those maps with the logits, so a heatmap costs no more than a prediction, in
Keras or in LiteRT; tests hold it to tf-keras-vis' `Gradcam`. The other
methods come from tf-keras-vis as they are (they need the Keras model and
TensorFlow, loaded on first use); their objects are built once and reused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bloodcell.inference import Classifier, softmax

GRADCAM = "Grad-CAM"
GRADCAM_PLUS_PLUS = "Grad-CAM++"
SCORECAM = "Score-CAM (fast)"
SMOOTHGRAD = "SmoothGrad saliency"
METHODS: tuple[str, ...] = (GRADCAM, GRADCAM_PLUS_PLUS, SCORECAM, SMOOTHGRAD)

# Faster Score-CAM: only the N channels with the largest activations are
# scored (tf-keras-vis' max_N), 10-20x quicker with nearly the same map.
SCORECAM_MAX_N = 32
SMOOTHGRAD_SAMPLES = 20
SMOOTHGRAD_NOISE = 0.2

# tf-keras-vis calls models with a one-element list; Keras 3 warns about that
# on every call. A process-wide filter (catch_warnings is not thread-safe).
warnings.filterwarnings("ignore", message="The structure of `inputs`", category=UserWarning)


@dataclass
class Explanation:
    """Probabilities for the image and a heatmap (input size, values 0..1)."""

    probabilities: np.ndarray
    class_index: int
    heatmap: np.ndarray
    method: str
    features: np.ndarray | None = None  # pooled penultimate features (out-of-distribution score)
    answered_by: str | None = None  # which of a cascade's models answered (bloodcell.routing)


def _normalise(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(-2, -1), keepdims=True)
    high = maps.max(axis=(-2, -1), keepdims=True)
    return np.where(high > low, (maps - low) / np.maximum(high - low, 1e-12), 0.0).astype(np.float32)


class Explainer:
    """Heatmaps for one classifier. Not thread-safe: callers hold a lock."""

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        self.layer_name = classifier.layer_name
        self._visualisers: dict[str, object] = {}

    def gradcam(self, model_input: np.ndarray, class_index: int | None = None) -> Explanation:
        """Prediction and Grad-CAM of one image from a single forward pass."""
        result = self.classifier.forward(np.asarray(model_input, np.float32)[None])
        probabilities = softmax(result.logits, self.classifier.temperature)[0]
        chosen = int(np.argmax(probabilities)) if class_index is None else int(class_index)
        # With test-time flips the prediction averages four mirror views; so
        # does the heatmap (each view's map already turned back).
        cam = np.maximum(result.class_maps[:, 0, :, :, chosen], 0.0).mean(axis=0)
        heatmap = upsample(cam, self.classifier.input_size)
        return Explanation(probabilities, chosen, _normalise(heatmap), GRADCAM, result.features[0],
                           None if result.answered_by is None else str(result.answered_by[0]))

    def explain(self, model_input: np.ndarray, method: str = GRADCAM,
                class_index: int | None = None) -> Explanation:
        """Heatmap by `method` for `class_index` (default: the predicted class)."""
        if method == GRADCAM:
            return self.gradcam(model_input, class_index)
        if method not in METHODS:
            raise ValueError(f"unknown explanation method {method!r}; choose from {METHODS}")
        from tf_keras_vis.utils.scores import CategoricalScore

        batch = np.asarray(model_input, np.float32)[None]
        features, logits = self.classifier.features_and_logits(batch)
        probabilities = softmax(logits, self.classifier.temperature)[0]
        chosen = int(np.argmax(probabilities)) if class_index is None else int(class_index)
        visualiser = self._visualiser(method)
        score = CategoricalScore([chosen])
        heatmap = self._run(visualiser, method, score, batch)
        return Explanation(probabilities, chosen, _normalise(np.asarray(heatmap, np.float32))[0], method,
                           features[0])

    def _run(self, visualiser, method: str, score, batch: np.ndarray):
        if method == SMOOTHGRAD:
            return visualiser(score, batch, smooth_samples=SMOOTHGRAD_SAMPLES, smooth_noise=SMOOTHGRAD_NOISE)
        if method == SCORECAM:
            return visualiser(score, batch, penultimate_layer=self.layer_name, max_N=SCORECAM_MAX_N,
                              seek_penultimate_conv_layer=False)
        # The named layer itself, not tf-keras-vis' nearest Conv2D before it:
        # all CAM methods then explain the same feature maps as Grad-CAM.
        return visualiser(score, batch, penultimate_layer=self.layer_name, seek_penultimate_conv_layer=False)

    def _visualiser(self, method: str):
        if method not in self._visualisers:
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.saliency import Saliency
            from tf_keras_vis.scorecam import Scorecam
            from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

            kind = {GRADCAM_PLUS_PLUS: GradcamPlusPlus, SCORECAM: Scorecam, SMOOTHGRAD: Saliency}[method]
            # ReplaceToLinear works on a clone: scores are logits, the
            # classifier's own model keeps its softmax.
            self._visualisers[method] = kind(self.classifier.model, model_modifier=ReplaceToLinear(),
                                             clone=True)
        return self._visualisers[method]


def _linear_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of linear interpolation with aligned corners."""
    if size_in == 1:
        return np.ones((size_out, 1), np.float32)
    position = np.linspace(0.0, size_in - 1, size_out)
    low = np.clip(np.floor(position).astype(int), 0, size_in - 2)
    fraction = position - low
    weights = np.zeros((size_out, size_in), np.float32)
    weights[np.arange(size_out), low] = 1.0 - fraction
    weights[np.arange(size_out), low + 1] += fraction
    return weights


def upsample(cam: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w) map to (size, size), first and last samples on the corners.

    The same geometry as scipy.ndimage.zoom(order=1), which tf-keras-vis uses,
    so both Grad-CAM paths draw the same map.
    """
    rows = _linear_weights(cam.shape[0], size)
    columns = _linear_weights(cam.shape[1], size)
    return rows @ cam.astype(np.float32) @ columns.T


def colormap(values: np.ndarray) -> np.ndarray:
    """Map 0..1 to RGB (uint8) with the 'jet' scale: blue cold, red hot."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def overlay(image: Image.Image, heatmap: np.ndarray, opacity: float = 0.45,
            max_side: int = 512, box: tuple[float, float, float, float] | None = None) -> Image.Image:
    """Blend a coloured heatmap over `image`.

    Without `box` the model saw the whole image squeezed to a square, so the
    heatmap is stretched back over the whole image the same way. With `box`
    (left, top, right, bottom as fractions of the image) the model saw only
    that square (the cell view), and the heatmap covers just that part.
    """
    image = image.convert("RGB")
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    opacity = float(np.clip(opacity, 0.0, 1.0))
    if box is None:
        heat = Image.fromarray(np.asarray(heatmap, np.float32)).resize(image.size, Image.Resampling.BILINEAR)
        coloured = Image.fromarray(colormap(np.asarray(heat)))
        return Image.blend(image, coloured, opacity)
    left, top = round(box[0] * image.width), round(box[1] * image.height)
    right, bottom = max(left + 1, round(box[2] * image.width)), max(top + 1, round(box[3] * image.height))
    heat = Image.fromarray(np.asarray(heatmap, np.float32)).resize((right - left, bottom - top),
                                                                   Image.Resampling.BILINEAR)
    region = image.crop((left, top, right, bottom))
    result = image.copy()
    result.paste(Image.blend(region, Image.fromarray(colormap(np.asarray(heat))), opacity), (left, top))
    return result
