"""Latency of prediction and Grad-CAM for one image, on this machine.

Prints p50/p95 over repeated runs after warm-up for: decode + preprocess +
predict; our Grad-CAM path (prediction included, from the serving function's
class maps); and tf-keras-vis' own Gradcam on the same model and image, for
comparison.

    python -m benchmarks.gradcam_speed [--model cellfocus] [--runs 50] [IMAGE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path


from bloodcell.config import DEFAULT_MODEL, resolve_data_dir
from bloodcell.explain import Explainer
from bloodcell.imaging import load_model_input
from bloodcell.inference import Classifier


def timed(function, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("image", nargs="?")
    args = parser.parse_args()
    image = Path(args.image) if args.image else sorted((resolve_data_dir() / "monocyte").iterdir())[0]
    data = image.read_bytes()

    classifier = Classifier.load(args.model)
    explainer = Explainer(classifier)
    size = classifier.input_size

    def predict():
        return classifier.predict_proba(load_model_input(data, size, classifier.view)[None])

    def predict_and_gradcam():
        return explainer.gradcam(load_model_input(data, size, classifier.view))

    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    reference = Gradcam(classifier.model, model_modifier=ReplaceToLinear(), clone=True)
    model_input = load_model_input(data, size, classifier.view)[None]

    def tf_keras_vis_gradcam():
        return reference(CategoricalScore([0]), model_input, penultimate_layer=explainer.layer_name,
                         seek_penultimate_conv_layer=False)

    for function in (predict, predict_and_gradcam, tf_keras_vis_gradcam):
        for _ in range(3):
            function()  # warm-up: tracing and first-call allocations
    print(f"model {args.model} ({size} px), image {image.name}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    for name, function in (("decode + preprocess + predict", predict),
                           ("decode + preprocess + predict + Grad-CAM (class maps)", predict_and_gradcam),
                           ("tf-keras-vis Gradcam (no decode)", tf_keras_vis_gradcam)):
        p50, p95 = timed(function, args.runs)
        print(f"{name:55s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")


if __name__ == "__main__":
    main()
