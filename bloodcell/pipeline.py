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

from bloodcell.imaging import FULL_VIEW, load_model_input

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


def _gaussian_blur(images: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    radius = 3
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    horizontal = tf.tile(tf.reshape(kernel, (1, -1, 1, 1)), (1, 1, 3, 1))
    vertical = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, 3, 1))
    images = tf.nn.depthwise_conv2d(images, horizontal, (1, 1, 1, 1), "SAME")
    return tf.nn.depthwise_conv2d(images, vertical, (1, 1, 1, 1), "SAME")


def augment_colour(images: tf.Tensor) -> tf.Tensor:
    """Hard colour and focus augmentation, per image, on pixels 0..255.

    The cell view already normalises the stain; these perturbations go
    further so that no residual colour or sharpness difference between the
    labs is worth learning: hue, saturation, brightness and contrast
    jitter, greyscale for one image in ten, and blur (the Munich scans are
    softer than the Barcelona ones) for one batch in three.
    """
    x = images / 255.0
    x = tf.map_fn(lambda image: tf.image.random_hue(image, 0.06), x)
    x = tf.map_fn(lambda image: tf.image.random_saturation(image, 0.6, 1.4), x)
    x = tf.map_fn(lambda image: tf.image.random_brightness(image, 0.12), x)
    x = tf.map_fn(lambda image: tf.image.random_contrast(image, 0.7, 1.3), x)
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
    use_grey = tf.random.uniform((tf.shape(x)[0], 1, 1, 1)) < 0.1
    x = tf.where(use_grey, grey, x)
    x = tf.clip_by_value(x, 0.0, 1.0) * 255.0
    blur = tf.random.uniform(()) < 1 / 3
    sigma = tf.random.uniform((), 0.6, 1.6)
    return tf.cond(blur, lambda: _gaussian_blur(x, sigma), lambda: x)


def _decode(size: int, view: str):
    def load(path: bytes) -> np.ndarray:
        return load_model_input(path.decode(), size, view)

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
    view: str = FULL_VIEW,
    colour_augment: bool = False,
) -> tf.data.Dataset:
    """Batched (images, labels) with images as float32 0..255, cached in memory."""
    dataset = tf.data.Dataset.from_tensor_slices(
        ([str(p) for p in paths], np.asarray(labels, dtype=np.int32))
    )
    dataset = dataset.map(_decode(size, view), num_parallel_calls=AUTOTUNE, deterministic=True).cache()
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment:
        augmenter = make_augmenter(seed)
        dataset = dataset.map(
            lambda x, y: (augment_batch(x, augmenter, seed), y), num_parallel_calls=AUTOTUNE
        )
    if colour_augment:
        dataset = dataset.map(lambda x, y: (augment_colour(x), y), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
