"""Every shipped model timed side by side, in one process, on the same images.

`python -m bloodcell bench` times the default model and the running app;
this puts the models beside each other, so a figure in the README's speed
table is comparable with the next one in its row: decode, find the cell,
make the view and predict (p50 and p95 over single images), the same with a
Grad-CAM heatmap, and a batch of photos through `Classifier.predict_sources`
(the CLI's path: framing, red cells and outlier check included). The slow
heatmap methods are timed by `bench`, not here.

    python -m benchmarks.model_speed [--runs N] [--batch N] [--models NAME ...]
"""

from __future__ import annotations

import argparse
import os

from bloodcell.bench import benchmark_images, cpu_name, in_process
from bloodcell.config import SHIPPED_MODEL_NAMES, resolve_data_dir, resolve_models_dir
from bloodcell.explain import GRADCAM

COLUMNS = {"predict_p50_ms": "predict p50 ms", "predict_p95_ms": "p95",
           "predict_gradcam_p50_ms": "with Grad-CAM p50 ms", "predict_gradcam_p95_ms": "p95",
           "batch_images_per_s": "batch images/s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="single images timed per figure (default 100)")
    parser.add_argument("--batch", type=int, default=200, help="photos in the batch (default 200)")
    parser.add_argument("--models", nargs="+", default=list(SHIPPED_MODEL_NAMES), metavar="NAME")
    args = parser.parse_args()
    if args.runs < 1 or args.batch < 1:
        parser.error("--runs and --batch must be at least 1")
    images = benchmark_images(resolve_data_dir(), max(args.runs, args.batch))
    print(f"{cpu_name()} ({os.cpu_count()} cores), {len(images)} images, {args.runs} runs, "
          f"batch of {args.batch}")
    print("| model | runtime | " + " | ".join(COLUMNS.values()) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for name in args.models:
        results = in_process(name, resolve_models_dir(), images, args.runs, args.batch, methods=(GRADCAM,))
        print(f"| {name} | {results['runtime']} | " + " | ".join(str(results[key]) for key in COLUMNS) + " |",
              flush=True)


if __name__ == "__main__":
    main()
