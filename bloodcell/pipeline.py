"""tf.data input pipeline: decode, resize, cache, augment, prefetch.

Decoding goes through `bloodcell.imaging.load_model_input` (wrapped in
`tf.numpy_function`), the same function the CLI and the app call, so that a
training image and an uploaded copy of it reach the model as identical pixels.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bloodcell.imaging import load_model_input

AUTOTUNE = tf.data.AUTOTUNE


def make_augmenter(seed: int = 0) -> keras.Sequential:
    """Interpolating geometric augmentation: small rotation, zoom and shift."""
    return keras.Sequential(
        [
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomTranslation(0.06, 0.06, fill_mode="reflect", seed=seed + 3),
        ],
        name="augment",
    )


def augment_batch(images: tf.Tensor, augmenter: keras.Sequential, seed: int = 0) -> tf.Tensor:
    """A cell has no up, down, left or right: random flips and quarter turns.

    Flips and quarter turns are lossless. Resampling (rotation, zoom, shift)
    blurs an image slightly, so it is applied to half of the batches only:
    otherwise every training image would be softer than any image the model
    sees at test time, and a from-scratch CNN learns that difference.
    """
    images = tf.image.rot90(images, k=tf.random.uniform((), 0, 4, dtype=tf.int32))
    images = tf.map_fn(tf.image.random_flip_left_right, images)
    images = tf.map_fn(tf.image.random_flip_up_down, images)
    resample = tf.random.uniform(()) < 0.5
    return tf.cond(resample, lambda: augmenter(images, training=True), lambda: images)


def _decode(size: int):
    def load(path: bytes) -> np.ndarray:
        return load_model_input(path.decode(), size)

    def mapper(path, label):
        image = tf.numpy_function(load, [path], tf.float32, stateful=False)
        image.set_shape((size, size, 3))
        return image, label

    return mapper


def make_dataset(
    paths: list[Path],
    labels: list[int],
    size: int,
    batch_size: int = 32,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batched (images, labels) with images as float32 0..255, cached in memory."""
    dataset = tf.data.Dataset.from_tensor_slices(
        ([str(p) for p in paths], np.asarray(labels, dtype=np.int32))
    )
    dataset = dataset.map(_decode(size), num_parallel_calls=AUTOTUNE, deterministic=True).cache()
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment:
        augmenter = make_augmenter(seed)
        dataset = dataset.map(
            lambda x, y: (augment_batch(x, augmenter, seed), y), num_parallel_calls=AUTOTUNE
        )
    return dataset.prefetch(AUTOTUNE)
