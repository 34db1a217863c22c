"""Where a training epoch's time goes: the input pipeline against the network's step.

A training epoch reads its batches from the tf.data pipeline
(`bloodcell.pipeline.make_dataset`: decode, cell view and twins, cached;
then flips, rotation, colour, focus and texture drawn afresh each epoch)
and runs one optimizer step per batch. This times each part on its own, on
a sample of the training split, with a model's own recipe:

- building the cached views (decode, cell view, twin), per image: paid
  once per run (and again after each resume);
- the augmentation after the cache, per batch: paid every epoch; and each
  of its stages alone;
- one training step of the network per batch, with the backbone frozen
  (the head phase) and partly unfrozen (fine-tuning), on a batch already
  made.

An epoch takes at least the larger of the last two per batch (prefetch
overlaps them only where a core is free), so their ratio says which one to
make faster.

    python -m benchmarks.training_speed [--model celltwin] [--images 256] [--steps 8] [--set KEY=VALUE ...]
                                        [--image-size N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from bloodcell.bench import cpu_name
from bloodcell.config import CLASS_NAMES, resolve_data_dir, resolve_imagenet_weights, resolve_models_dir
from bloodcell.counterfactual import lab_looks
from bloodcell.data import load_or_create_manifest
from bloodcell.errors import BloodcellError
from bloodcell.imaging import GREY_CELL_VIEW
from bloodcell.models import MOBILENET_FINE_TUNE_FROM, build_model, get_spec, set_mobilenet_trainable
from bloodcell.pipeline import augment_batch, augment_colour, make_augmenter, random_convolution
from bloodcell.training import RECIPES, fitted_network, parse_recipe_options, training_pipeline


def training_dataset(name: str, recipe: dict, images: int, size: int, seed: int = 0):
    """The training pipeline of `name`'s recipe over `images` photos drawn from the training split,
    and how many photos that split holds."""
    data_dir, models_dir = resolve_data_dir(), resolve_models_dir()
    manifest = load_or_create_manifest(data_dir, models_dir)
    train = manifest.paths("train")
    chosen = [train[i] for i in np.random.default_rng(seed).permutation(len(train))[:images]]
    paths = [data_dir / path for path, _ in chosen]
    labels = [CLASS_NAMES.index(label) for _, label in chosen]
    dataset = training_pipeline(name, recipe, paths, labels, size, seed, looks=lambda: lab_looks(manifest, data_dir),
                                changed=recipe != RECIPES[name])
    return dataset, len(train)


def seconds_per_batch(dataset) -> tuple[float, int, tuple]:
    """One pass over `dataset`: seconds per batch, the number of batches, and the first batch."""
    started, first, batches = time.perf_counter(), None, 0
    for batch in dataset:
        if first is None:
            first = batch
        batches += 1
    return (time.perf_counter() - started) / batches, batches, first


def stage_seconds(recipe: dict, grey: bool, images, runs: int = 3) -> dict[str, float]:
    """Median seconds per batch of each augmentation the recipe turns on, each alone, run as tf.data runs it."""
    augmenter = make_augmenter(0)  # its random layers hold variables: made once, outside the graph
    stages = {"flips, quarter turns, rotation, zoom, shift": lambda x: augment_batch(x, augmenter)}
    if recipe.get("colour_augment"):
        stages["colour and focus"] = lambda x: augment_colour(x, grey, recipe.get("focus_levels"))
    if recipe.get("random_texture"):
        stages["random texture"] = lambda x: random_convolution(x, recipe["random_texture"])
    timed = {}
    for name, stage in stages.items():
        graph = tf.function(stage)
        graph(images)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            graph(images)
            times.append(time.perf_counter() - started)
        timed[name] = float(np.median(times))
    return timed


def step_seconds(model: keras.Model, batch: tuple, steps: int) -> float:
    """Median seconds of one optimizer step on `batch`, after one untimed step that builds the graph.

    `model` is what training fits (bloodcell.training.fitted_network), so a recipe with a twin
    consistency loss is timed with that loss on its paired batches."""
    x, y = batch
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy())
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def report(name: str, recipe: dict, images: int, size: int, steps_timed: int) -> None:
    """Print each part's time: the cached views, the augmentation and its stages, the training step."""
    spec = get_spec(name)
    dataset, split_photos = training_dataset(name, recipe, images, size)
    building, batches, _ = seconds_per_batch(dataset)
    print(f"first pass (cached views built):  {building * batches / images * 1000:7.0f} ms per image")
    augmenting, batches, batch = seconds_per_batch(dataset)
    print(f"later passes (augmentation only): {augmenting:7.2f} s per batch, of which, each alone:")
    for stage, seconds in stage_seconds(recipe, spec.view == GREY_CELL_VIEW, batch[0]).items():
        print(f"  {stage}: {seconds:.2f} s")

    model = build_model(name, size, base_weights=resolve_imagenet_weights(None))
    trained = fitted_network(model, recipe)
    steps = {}
    if spec.backbone == "mobilenetv2":
        set_mobilenet_trainable(model, fine_tune=False)
        steps["head phase"] = step_seconds(trained, batch, steps_timed)
        set_mobilenet_trainable(model, fine_tune=True,
                                fine_tune_from=recipe.get("fine_tune_from", MOBILENET_FINE_TUNE_FROM))
        steps["fine-tuning"] = step_seconds(trained, batch, steps_timed)
    else:
        steps["training"] = step_seconds(trained, batch, steps_timed)
    for phase, seconds in steps.items():
        print(f"training step, {phase + ':':13s}    {seconds:7.2f} s per batch "
              f"(augmentation is {augmenting / seconds:.1f}x that)")
    full_batches = -(-split_photos // recipe["batch_size"])
    print(f"an epoch of the full split ({full_batches} batches) takes at least "
          f"{full_batches * max(augmenting, max(steps.values())) / 60:.1f} min; both parts in turn: "
          f"{full_batches * (augmenting + max(steps.values())) / 60:.1f} min (plus the validation pass)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="celltwin", choices=sorted(RECIPES))
    parser.add_argument("--images", type=int, default=256, help="training photos in the sample (default 256)")
    parser.add_argument("--steps", type=int, default=8, help="training steps timed per phase (default 8)")
    parser.add_argument("--image-size", type=int, help="input size (default: the model's)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change the recipe as `train --set` does")
    args = parser.parse_args()
    try:
        recipe = {**RECIPES[args.model], **parse_recipe_options(args.set)}
    except BloodcellError as exc:
        parser.error(str(exc))
    if args.batch_size is not None:
        recipe["batch_size"] = args.batch_size
    spec = get_spec(args.model)
    size = args.image_size or spec.input_size
    if args.images < recipe["batch_size"] or args.steps < 1 or recipe["batch_size"] < 1 or size < 32:
        parser.error(f"--images must be at least the batch size ({recipe['batch_size']}), --steps and --batch-size "
                     "at least 1 and --image-size at least 32")
    print(f"{cpu_name()} ({os.cpu_count()} cores), {args.model} at {size} pixels, {args.images} training photos, "
          f"batches of {recipe['batch_size']}")
    try:
        report(args.model, recipe, args.images, size, args.steps)
    except BloodcellError as exc:  # no dataset, a split that does not match it, no ImageNet weights
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
