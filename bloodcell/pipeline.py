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

from bloodcell.cellmask import find_cell
from bloodcell.cellview import BACKGROUND_GREY, DETAIL_CEILING, VIEW_MIN_BOX_FRACTION, view_zoom
from bloodcell.config import CLASS_NAMES, LAB_CELL_SIZE, LAB_RED_CELL_SIZE, SOURCE_LAB, other_lab
from bloodcell.counterfactual import (BY_RED_CELLS, BY_WHITE_CELLS, MAGNIFICATION_RULERS, LabLook, counterfactual_of,
                                      round_trip_of)
from bloodcell.imaging import CELL_VIEWS, FULL_VIEW, GREY_CELL_VIEW, load_model_input, read_image, to_model_input

AUTOTUNE = tf.data.AUTOTUNE
# Random convolutions' kernel sizes: 1 mixes colours only, 3-7 also reshape
# local texture over a few pixels, less than a nucleus' lobe.
RANDOM_CONVOLUTION_KERNELS = (1, 3, 5, 7)


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


def _per_image(transform, images: tf.Tensor) -> tf.Tensor:
    """`transform` (a random tf.image op) applied to each image of the batch in turn.

    One image at a time (tf.map_fn runs ten at once by default), so the
    stateful random op draws in the images' order and a seeded run draws
    the same numbers every time.
    """
    return tf.map_fn(transform, images, parallel_iterations=1)


def augment_batch(images: tf.Tensor, augmenter: keras.Sequential, seed: int = 0) -> tf.Tensor:
    """A cell has no up, down, left or right: random flips and quarter turns.

    Flips and quarter turns are lossless. Resampling (rotation, zoom, shift)
    blurs an image slightly, so it is applied to half of the batches only:
    otherwise every training image would be softer than any image the model
    sees at test time, and a from-scratch CNN learns that difference.
    """
    images = tf.image.rot90(images, k=tf.random.uniform((), 0, 4, dtype=tf.int32))
    images = _per_image(tf.image.random_flip_left_right, images)
    images = _per_image(tf.image.random_flip_up_down, images)
    resample = tf.random.uniform(()) < 0.5
    return tf.cond(resample, lambda: augmenter(images, training=True), lambda: images)


def _gaussian_blur(images: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Separable Gaussian blur; edges reflected, so the border does not darken.

    Each pass is a weighted sum of seven shifted slices: the same sums as a
    depthwise convolution, in about half its time on a CPU.
    """
    radius = 3
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    rows = tf.add_n([kernel[k] * padded[:, :, k:k + width] for k in range(2 * radius + 1)])
    return tf.add_n([kernel[k] * rows[:, k:k + height] for k in range(2 * radius + 1)])


# The fine detail of a cell (image_detail on the cell view) differs between
# the labs: median 5.7 for the Munich scans and 12.5 for the Barcelona ones
# (bloodcell.cellview.LAB_VIEW_DETAIL; 64 training images each; tenth
# percentiles 3.9 and 7.1, ninetieth 8.4 and 16.1). Within these bounds the
# focus augmentation gives most images a detail level drawn independently of
# their lab.
FOCUS_DETAIL_RANGE = (4.0, 16.0)
# The grey cell view caps detail at DETAIL_CEILING, so its focus range stops there.
GREY_FOCUS_DETAIL_RANGE = (4.0, DETAIL_CEILING)
FOCUS_PROBABILITY = 0.8


def image_detail(images: tf.Tensor) -> tf.Tensor:
    """Mean absolute Laplacian of the grey level over the cell, per image (pixels 0..255).

    The cell view's background is flat, so the cell is where the grey level
    varies at all: the mean runs over those pixels, and a small cell in a
    large frame measures the same as a large one. It is the tf.data twin of
    bloodcell.counterfactual.cell_detail (which needs a cell mask and works
    on whole photos); it counts the cell's outline too, so its values run
    higher than cell_detail's.
    """
    # Shifted slices, not conv2d and max_pool2d: the same numbers, about nine
    # times faster on one grey channel on a CPU, where this ran three times a
    # batch and was the most expensive part of the training augmentation.
    grey = tf.image.rgb_to_grayscale(images)[..., 0]
    laplacian = tf.abs(grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
                       - 4.0 * grey[:, 1:-1, 1:-1])
    spread = _window_max(grey) + _window_max(-grey)
    varies = tf.cast(spread > 0.5, tf.float32)
    area = tf.maximum(tf.reduce_sum(varies, axis=(1, 2)), 1.0)
    return tf.reduce_sum(laplacian * varies, axis=(1, 2)) / area


def _window_max(grey: tf.Tensor) -> tf.Tensor:
    """The largest value of each 3 x 3 window (no padding) of a batch of one-channel images."""
    rows = tf.maximum(tf.maximum(grey[:, :, :-2], grey[:, :, 1:-1]), grey[:, :, 2:])
    return tf.maximum(tf.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def random_focus(images: tf.Tensor, detail_range: tuple[float, float] = FOCUS_DETAIL_RANGE) -> tf.Tensor:
    """Blur or sharpen each image towards a random detail level.

    Blurring alone cannot hide sharpness: a sharp cell would still only ever
    come from Barcelona. So each image (four in five) is moved to a detail
    level drawn log-uniformly from `detail_range`, by mixing it with a
    blurred copy (softer) or pushing away from it (unsharp mask, sharper):
    focus_blend.
    """
    count = tf.shape(images)[0]
    sigma = tf.random.uniform((), 1.0, 1.6)
    low, high = detail_range
    target = tf.exp(tf.random.uniform((count,), tf.math.log(low), tf.math.log(high)))
    chosen = tf.random.uniform((count,)) < FOCUS_PROBABILITY
    return tf.where(chosen[:, None, None, None], focus_blend(images, target, sigma), images)


def focus_blend(images: tf.Tensor, target: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """random_focus without the chance: every image moved towards detail `target`, the copy blurred at `sigma`.

    The blend weight is interpolated from each image's detail at weights -1
    (the blurred copy), 0 and 1: -1..0 blurs, 0..6 sharpens. The numpy twin
    used at test time is bloodcell.cellview.focus_to.
    """
    soft = _gaussian_blur(images, sigma)
    difference = images - soft
    detail = image_detail(images)
    softest = image_detail(soft)
    sharper = image_detail(images + difference)
    blur_weight = -tf.clip_by_value((detail - target) / tf.maximum(detail - softest, 1e-3), 0.0, 1.0)
    sharpen_weight = tf.clip_by_value((target - detail) / tf.maximum(sharper - detail, 1e-3), 0.0, 6.0)
    weight = tf.where(target < detail, blur_weight, sharpen_weight)
    return tf.clip_by_value(images + weight[:, None, None, None] * difference, 0.0, 255.0)


def fixed_focus(images: tf.Tensor, levels: tuple[float, ...]) -> tf.Tensor:
    """Every image blurred or sharpened to one of `levels` of fine detail, drawn at random.

    Training for test-time focus (bloodcell.inference.TTA_FLIPS_FOCUS), which
    shows each view at fixed levels: the model then sees no other detail
    level in training either.
    """
    count = tf.shape(images)[0]
    sigma = tf.random.uniform((), 1.0, 1.6)
    choice = tf.random.uniform((count,), 0, len(levels), dtype=tf.int32)
    return focus_blend(images, tf.gather(tf.constant(levels, tf.float32), choice), sigma)


def augment_colour(images: tf.Tensor, grey: bool = False,
                   focus_levels: tuple[float, ...] | None = None) -> tf.Tensor:
    """Hard colour and focus augmentation, per image, on pixels 0..255.

    The cell view already normalises the stain; these perturbations go
    further so that no residual colour or sharpness difference between the
    labs is worth learning: hue, saturation, brightness and contrast
    jitter, greyscale for one image in ten, and a random focus (the Munich
    scans are softer than the Barcelona ones) for four in five.

    With `grey` (the grey cell view) there is no colour to jitter: only
    brightness, contrast and the focus, within the view's detail ceiling.
    With `focus_levels`, every image is moved to one of those levels instead
    (fixed_focus).
    """
    x = images / 255.0
    if not grey:
        x = _per_image(lambda image: tf.image.random_hue(image, 0.06), x)
        x = _per_image(lambda image: tf.image.random_saturation(image, 0.6, 1.4), x)
    x = _per_image(lambda image: tf.image.random_brightness(image, 0.12), x)
    x = _per_image(lambda image: tf.image.random_contrast(image, 0.7, 1.3), x)
    if not grey:
        in_grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
        use_grey = tf.random.uniform((tf.shape(x)[0], 1, 1, 1)) < 0.1
        x = tf.where(use_grey, in_grey, x)
    if focus_levels:
        return fixed_focus(tf.clip_by_value(x, 0.0, 1.0) * 255.0, focus_levels)
    return random_focus(tf.clip_by_value(x, 0.0, 1.0) * 255.0,
                        GREY_FOCUS_DETAIL_RANGE if grey else FOCUS_DETAIL_RANGE)


def random_convolution(images: tf.Tensor, probability: float) -> tf.Tensor:
    """Give a share of the views a random texture that no lab has.

    Random convolutions (Xu et al., ICLR 2021): one k x k convolution per
    batch (k from RANDOM_CONVOLUTION_KERNELS, weights N(0, 1/(3k^2))), each
    output channel rescaled to the view's own mean and spread so brightness
    and contrast stay the view's, then mixed with the view at a weight drawn
    U(0, 1) per image. A cell's shape survives; the fine structure that
    scanner, compression and stain leave behind does not. The named parts of
    a lab's look (stain, field, focus, magnification) have their own
    augmentations; this is for the parts without a name. Each view is
    changed with `probability`; pixels 0..255.
    """
    count = tf.shape(images)[0]

    def convolve(size: int):
        def apply():
            kernel = tf.random.normal((size, size, 3, 3), stddev=1.0 / (3.0 * size * size) ** 0.5)
            pad = size // 2
            centred = tf.pad(images / 255.0 - 0.5, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            return tf.nn.conv2d(centred, kernel, 1, "VALID")
        return apply

    index = tf.random.uniform((), 0, len(RANDOM_CONVOLUTION_KERNELS), dtype=tf.int32)
    textured = tf.switch_case(index, [convolve(size) for size in RANDOM_CONVOLUTION_KERNELS])
    mean, variance = tf.nn.moments(images, axes=(1, 2), keepdims=True)
    textured_mean, textured_variance = tf.nn.moments(textured, axes=(1, 2), keepdims=True)
    spread = tf.sqrt(variance + 1e-6) / tf.sqrt(textured_variance + 1e-6)
    textured = (textured - textured_mean) * spread + mean
    weight = tf.random.uniform((count, 1, 1, 1))
    mixed = weight * images + (1.0 - weight) * textured
    chosen = tf.random.uniform((count, 1, 1, 1)) < probability
    return tf.clip_by_value(tf.where(chosen, mixed, images), 0.0, 255.0)


def other_lab_zoom(label: str, ruler: str = BY_WHITE_CELLS) -> float:
    """The magnification change that takes a photo of `label` to the other lab's.

    Measured by the labs' median white cells (0.76 from Munich to Barcelona,
    what the shipped recipes trained with) or by their red cells (0.82, the
    scanners' own ratio; bloodcell.redcells).
    """
    if ruler not in MAGNIFICATION_RULERS:
        raise ValueError(f"unknown magnification ruler {ruler!r} (expected one of {MAGNIFICATION_RULERS})")
    sizes = LAB_RED_CELL_SIZE if ruler == BY_RED_CELLS else LAB_CELL_SIZE
    return sizes[other_lab(label)] / sizes[SOURCE_LAB[label]]


def random_magnification(images: tf.Tensor, other_lab_zooms: tf.Tensor, probability: float) -> tf.Tensor:
    """Show cell views at a magnification between their own lab's and the other's.

    The labs photograph at different magnifications, so a cell's size in its
    view tells the lab, and through it the class: swapping only the
    magnification cost the random-focus cellfocus 3.4 points of test
    accuracy, more than any other part of the look. Each view
    (with `probability`) is zoomed about its centre by a factor drawn
    log-uniformly between 1 and `other_lab_zooms` (per image, from
    bloodcell.cellview.view_zoom), so every class is seen at both labs'
    scales but never beyond them: Munich cells only shrink, Barcelona cells
    only grow. The flat background grey fills what the zoom uncovers.
    """
    count = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    zoom = tf.exp(tf.random.uniform((count,)) * tf.math.log(other_lab_zooms))
    zoom = tf.where(tf.random.uniform((count,)) < probability, zoom, 1.0)
    # Output pixel (x, y) samples the input at centre + (x - centre) / zoom.
    centre = (size - 1.0) / 2.0
    inverse = 1.0 / zoom
    offset = centre * (1.0 - inverse)
    zeros = tf.zeros_like(zoom)
    transforms = tf.stack([inverse, zeros, offset, zeros, inverse, offset, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=BACKGROUND_GREY, interpolation="BILINEAR", fill_mode="CONSTANT")


def _decode(size: int, view: str, with_zoom: bool = False, ruler: str = BY_WHITE_CELLS):
    def load(path: bytes) -> np.ndarray:
        return load_model_input(path.decode(), size, view)

    def load_with_zoom(path: bytes, label: np.int32) -> tuple[np.ndarray, np.float32]:
        image = read_image(path.decode())
        mask = find_cell(image)
        zoom = view_zoom(mask, other_lab_zoom(CLASS_NAMES[int(label)], ruler), VIEW_MIN_BOX_FRACTION[view])
        return to_model_input(image, size, view, mask), np.float32(zoom)

    def mapper(path, label):
        image = tf.numpy_function(load, [path], tf.float32, stateful=False)
        image.set_shape((size, size, 3))
        return image, label

    def mapper_with_zoom(path, label):
        image, zoom = tf.numpy_function(load_with_zoom, [path, label], (tf.float32, tf.float32),
                                        stateful=False)
        image.set_shape((size, size, 3))
        zoom.set_shape(())
        return (image, zoom), label

    return mapper_with_zoom if with_zoom else mapper


def _decode_with_twin(size: int, view: str, looks: dict[str, LabLook], round_trip: bool = False,
                      stain_parts: bool = False, ruler: str = BY_WHITE_CELLS):
    """Decode each image into a pair: its own view and its counterfactual twin's.

    The twin is built on the full image (the audit's counterfactual_of), then
    goes through the same view as an upload would, cell mask found afresh.
    With `round_trip`, a third view: the twin rendered back into the image's
    own lab's look (round_trip_of). With `stain_parts` the twin's nucleus
    and cytoplasm are re-stained each on its own (as_other_lab). `ruler`
    measures the other lab's magnification (celltwin's twins: the white
    cells, as it was trained before the audit measured it by red cells).
    """
    def load_views(path: bytes, label: np.int32, index: np.int32) -> tuple[np.ndarray, ...]:
        image = read_image(path.decode())
        mask = find_cell(image)
        twin = counterfactual_of(image, CLASS_NAMES[int(label)], looks, int(index), mask, ruler=ruler,
                                 stain_parts=stain_parts)
        views = [to_model_input(image, size, view, mask), to_model_input(twin, size, view)]
        if round_trip:
            back = round_trip_of(twin, CLASS_NAMES[int(label)], looks, int(index))
            views.append(to_model_input(back, size, view))
        return tuple(views)

    def mapper(path, label, index):
        views = tf.numpy_function(load_views, [path, label, index], (tf.float32,) * (3 if round_trip else 2),
                                  stateful=False)
        for decoded in views:
            decoded.set_shape((size, size, 3))
        return tuple(views), label

    return mapper


def choose_twins(images: tf.Tensor, twins: tf.Tensor, share: float, trips: tf.Tensor | None = None,
                 trip_share: float = 0.0) -> tf.Tensor:
    """Each view replaced by its twin with probability `share` (and by its round trip with
    probability `trip_share`), drawn afresh every batch."""
    draw = tf.random.uniform(tf.shape(images)[:1])[:, None, None, None]
    chosen = tf.where(draw < share, twins, images)
    if trips is not None and trip_share:
        chosen = tf.where((draw >= share) & (draw < share + trip_share), trips, chosen)
    return chosen


def pair_with_twins(images: tf.Tensor, twins: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One batch of the views followed by their twins, each under its image's label.

    bloodcell.consistency relies on this order: row i and row i + n are the
    same cell in its own lab's look and in the other lab's.
    """
    return tf.concat([images, twins], axis=0), tf.concat([labels, labels], axis=0)


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
    magnification_transfer: float = 0.0,
    magnification_ruler: str = BY_WHITE_CELLS,
    random_texture: float = 0.0,
    twin_share: float = 0.0,
    twin_pairs: bool = False,
    round_trip_share: float = 0.0,
    twin_stain_parts: bool = False,
    looks: dict[str, LabLook] | None = None,
    focus_levels: tuple[float, ...] | None = None,
) -> tf.data.Dataset:
    """Batched (images, labels) with images as float32 0..255, cached in memory.

    `magnification_transfer` is the share of views shown at a magnification
    between their lab's and the other lab's as `magnification_ruler`
    measures it, the ruler that also zooms the twins (cell view only; see random_magnification and
    other_lab_zoom); `random_texture` the share given a random
    convolution after the colour augmentation (see random_convolution);
    `twin_share` the share replaced by their counterfactual twin under
    `looks` (bloodcell.counterfactual.lab_looks; cell views only), before
    any other augmentation. With `twin_pairs` every batch holds
    `batch_size` views and then their twins, so it is twice as large
    (pair_with_twins; for bloodcell.consistency). Both members of each pair
    are cached, so a twin is built once per image and each image keeps one
    twin (its field is chosen by its place in `paths`). `round_trip_share`
    (with `twin_share`) is the share replaced by their round trip
    (round_trip_of). `twin_stain_parts` re-stains each twin's nucleus and
    cytoplasm each on its own (bloodcell.stain.transfer_stain_parts). `focus_levels`
    replaces the colour augmentation's random focus by fixed_focus.
    """
    if focus_levels and not colour_augment:
        raise ValueError("focus_levels replace the colour augmentation's focus: give colour_augment too")
    if magnification_transfer and view not in CELL_VIEWS:
        raise ValueError("magnification transfer works on the cell view only")
    if twin_share and twin_pairs:
        raise ValueError("give twin_share (twins replace views) or twin_pairs (views and twins together), not both")
    if round_trip_share and not twin_share:
        raise ValueError("round trips go with twins: give twin_share too")
    if twin_stain_parts and not (twin_share or twin_pairs):
        raise ValueError("twin_stain_parts says how twins are re-stained: give twin_share or twin_pairs too")
    if twin_share + round_trip_share > 1:
        raise ValueError("twin_share and round_trip_share together cannot exceed 1")
    if twin_share or twin_pairs:
        if view not in CELL_VIEWS:
            raise ValueError("counterfactual twins work on the cell views only")
        if looks is None:
            raise ValueError("counterfactual twins need the two labs' looks (bloodcell.counterfactual.lab_looks)")
        if magnification_transfer:
            # The twin already takes the other lab's magnification.
            raise ValueError("use counterfactual twins or the magnification transfer, not both")
    label_array = np.asarray(labels, dtype=np.int32)
    if twin_share or twin_pairs:
        dataset = tf.data.Dataset.from_tensor_slices(
            ([str(p) for p in paths], label_array, np.arange(len(paths), dtype=np.int32)))
        decode = _decode_with_twin(size, view, looks, round_trip=bool(round_trip_share),
                                   stain_parts=twin_stain_parts, ruler=magnification_ruler)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], label_array))
        decode = _decode(size, view, with_zoom=bool(magnification_transfer), ruler=magnification_ruler)
    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True).cache()
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    # The maps that draw random numbers run one batch at a time (no
    # num_parallel_calls): batches drawn side by side take their numbers from
    # one random op in whatever order they reach it, and a seeded run would
    # then differ from the last. prefetch still overlaps them with training.
    if twin_share:
        dataset = dataset.map(lambda views, y: (choose_twins(views[0], views[1], twin_share,
                                                              views[2] if round_trip_share else None,
                                                              round_trip_share), y))
    if twin_pairs:
        dataset = dataset.map(lambda pair, y: pair_with_twins(pair[0], pair[1], y), num_parallel_calls=AUTOTUNE)
    if magnification_transfer:
        dataset = dataset.map(
            lambda inputs, y: (random_magnification(inputs[0], inputs[1], magnification_transfer), y))
    if augment:
        augmenter = make_augmenter(seed)
        dataset = dataset.map(lambda x, y: (augment_batch(x, augmenter, seed), y))
    if colour_augment:
        grey = view == GREY_CELL_VIEW
        dataset = dataset.map(lambda x, y: (augment_colour(x, grey, focus_levels), y))
    if random_texture:
        dataset = dataset.map(lambda x, y: (random_convolution(x, random_texture), y))
    return dataset.prefetch(AUTOTUNE)
