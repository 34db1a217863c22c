"""One preprocessing for all: tf.data, the CLI and the app give identical input."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from bloodcell.cli import main
from bloodcell.config import CLASS_NAMES
from bloodcell.inference import Classifier
from bloodcell.pipeline import make_dataset


def test_same_image_same_input_and_answer_everywhere(tiny_models_dir, drawn_dataset, tmp_path):
    files = sorted((drawn_dataset / "monocyte").iterdir())[:3] + sorted((drawn_dataset / "myeloblast").iterdir())[:2]
    classifier = Classifier.load("cnn", tiny_models_dir)
    size = classifier.input_size

    training_batches = make_dataset(files, [0] * len(files), size, batch_size=len(files))
    training_input = next(iter(training_batches))[0].numpy()
    cli_input = np.stack([classifier.prepare(path) for path in files])  # CLI: from the path
    app_input = np.stack([classifier.prepare(path.read_bytes()) for path in files])  # app: upload bytes
    assert np.array_equal(training_input, cli_input)
    assert np.array_equal(training_input, app_input)

    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", "cnn", "--models-dir", str(tiny_models_dir),
                 *map(str, files), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    expected = classifier.predict_proba(training_input)
    for row, probabilities in zip(rows, expected):
        assert row["predicted_class"] == CLASS_NAMES[int(np.argmax(probabilities))]
        assert np.allclose([float(row[name]) for name in CLASS_NAMES], probabilities, atol=1e-4)


def test_colour_augmentation_keeps_shape_and_range_and_changes_colours():
    import tensorflow as tf

    from bloodcell.pipeline import augment_colour

    images = tf.random.uniform((6, 32, 32, 3), 0, 255, seed=1)
    out = augment_colour(images).numpy()
    assert out.shape == (6, 32, 32, 3)
    assert out.min() >= 0 and out.max() <= 255.0001
    assert not np.allclose(out, images.numpy())


def _textured_views(count: int, grain: float, seed: int) -> np.ndarray:
    """Cell-view-like images: a granular disc on flat grey, the grain smoothed by `grain` pixels."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 24 ** 2
    views = np.full((count, 64, 64, 3), 225.0, np.float32)
    for view in views:
        texture = ndimage.gaussian_filter(rng.normal(0, 50, (64, 64)), grain)
        view[disc] = (140 + texture[disc])[:, None]
    return np.clip(views, 0, 255)


def test_focus_measures_match_their_convolution_definitions():
    """image_detail and the blur are written with shifted slices for speed; they compute the convolutions."""
    import tensorflow as tf

    from bloodcell.pipeline import _gaussian_blur, image_detail

    views = tf.constant(_textured_views(6, 1.0, seed=4), tf.float32)
    grey = tf.image.rgb_to_grayscale(views)
    laplacian_kernel = tf.constant([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], shape=(3, 3, 1, 1))
    laplacian = tf.abs(tf.nn.conv2d(grey, laplacian_kernel, 1, "VALID"))
    spread = tf.nn.max_pool2d(grey, 3, 1, "VALID") + tf.nn.max_pool2d(-grey, 3, 1, "VALID")
    varies = tf.cast(spread > 0.5, tf.float32)
    expected = tf.reduce_sum(laplacian * varies, axis=(1, 2, 3)) / tf.reduce_sum(varies, axis=(1, 2, 3))
    np.testing.assert_allclose(image_detail(views).numpy(), expected.numpy(), rtol=1e-5)

    sigma = 1.3
    taps = np.exp(-0.5 * (np.arange(-3, 4) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    padded = tf.pad(views, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    kernel = tf.constant(np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, 3, 1), np.float32))
    blurred = tf.nn.depthwise_conv2d(padded, kernel, (1, 1, 1, 1), "VALID")
    np.testing.assert_allclose(_gaussian_blur(views, tf.constant(sigma)).numpy(), blurred.numpy(), atol=1e-3)


def test_random_focus_takes_away_the_sharpness_gap_between_labs():
    import tensorflow as tf

    from bloodcell.pipeline import image_detail, random_focus

    tf.random.set_seed(3)
    soft, sharp = _textured_views(48, 1.6, seed=1), _textured_views(48, 0.6, seed=2)
    before = np.median(image_detail(sharp).numpy()) / np.median(image_detail(soft).numpy())
    focused_soft, focused_sharp = random_focus(tf.constant(soft)), random_focus(tf.constant(sharp))
    after = np.median(image_detail(focused_sharp).numpy()) / np.median(image_detail(focused_soft).numpy())
    assert before > 2.5
    assert after < 1.6
    assert focused_soft.shape == soft.shape
    assert float(tf.reduce_min(focused_sharp)) >= 0 and float(tf.reduce_max(focused_sharp)) <= 255
    # The flat background stays flat: only the cell is blurred or sharpened.
    np.testing.assert_allclose(focused_soft.numpy()[:, :3, :3], 225.0, atol=1e-3)



def test_random_convolution_changes_texture_but_keeps_each_views_brightness():
    import tensorflow as tf

    from bloodcell.pipeline import random_convolution

    tf.random.set_seed(5)
    views = tf.constant(_textured_views(16, 0.6, seed=4))
    np.testing.assert_array_equal(random_convolution(views, 0.0).numpy(), views.numpy())
    for _ in range(4):  # one kernel per batch: several batches, several kernel sizes
        out = random_convolution(views, 1.0).numpy()
        assert out.shape == views.shape and out.min() >= 0 and out.max() <= 255
        changed = np.abs(out - views.numpy()).mean(axis=(1, 2, 3))
        assert np.all(changed > 0.01)
        # Mixed at a random weight per view, so some views change much more than others.
        assert changed.max() > 2 * changed.min()
        # Each channel keeps the view's own mean: brightness is not what this varies.
        np.testing.assert_allclose(out.mean(axis=(1, 2)), views.numpy().mean(axis=(1, 2)), atol=3.0)


def test_random_texture_dataset_gives_cell_views_and_labels(drawn_dataset):
    files = sorted((drawn_dataset / "basophil").iterdir())[:4]
    images, labels = next(iter(make_dataset(files, [0] * 4, 32, batch_size=4, view="cell", shuffle=True,
                                            augment=True, colour_augment=True, random_texture=1.0)))
    assert images.shape == (4, 32, 32, 3) and labels.numpy().tolist() == [0] * 4
    assert float(images.numpy().min()) >= 0 and float(images.numpy().max()) <= 255


def _disc_views(count: int, radius: int = 20, side: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    disc = (yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 < radius ** 2
    views = np.full((count, side, side, 3), 225.0, np.float32)
    views[:, disc] = 90.0
    return views


def _disc_radius(views: np.ndarray) -> np.ndarray:
    return np.sqrt((views[..., 0] < 157.5).sum(axis=(1, 2)) / np.pi)


def test_random_magnification_stays_between_the_two_labs_scales():
    import tensorflow as tf

    from bloodcell.cellview import BACKGROUND_GREY
    from bloodcell.pipeline import random_magnification

    views = tf.constant(_disc_views(64))
    shrink = random_magnification(views, tf.fill((64,), 0.75), probability=1.0).numpy()
    grow = random_magnification(views, tf.fill((64,), 1.3), probability=1.0).numpy()
    kept = random_magnification(views, tf.fill((64,), 0.75), probability=0.0).numpy()

    radius = 20
    assert np.all(_disc_radius(shrink) >= 0.75 * radius - 1) and np.all(_disc_radius(shrink) <= radius + 0.5)
    assert np.all(_disc_radius(grow) <= 1.3 * radius + 1) and np.all(_disc_radius(grow) >= radius - 0.5)
    # Drawn between the two scales, not stuck at either end.
    assert np.std(_disc_radius(shrink)) > 0.8 and np.std(_disc_radius(grow)) > 0.8
    np.testing.assert_array_equal(kept, views.numpy())
    # What the zoom uncovers is the view's background grey.
    assert np.all(shrink[:, :3, :3] == BACKGROUND_GREY)


def test_magnification_transfer_needs_the_cell_view(drawn_dataset):
    import pytest

    files = sorted((drawn_dataset / "monocyte").iterdir())[:2]
    with pytest.raises(ValueError, match="cell view"):
        make_dataset(files, [0, 0], 32, magnification_transfer=0.5)


def test_magnification_transfer_dataset_gives_images_and_labels(drawn_dataset):
    from bloodcell.imaging import CELL_VIEW

    files = sorted((drawn_dataset / "seg_neutrophil").iterdir())[:3]
    label = CLASS_NAMES.index("seg_neutrophil")
    images, labels = next(iter(make_dataset(files, [label] * 3, 48, batch_size=3, view=CELL_VIEW,
                                            magnification_transfer=1.0)))
    assert images.shape == (3, 48, 48, 3) and list(labels.numpy()) == [label] * 3


@pytest.mark.parametrize("ruler", ["white cells", "red cells"])
def test_decoder_pairs_each_view_with_its_cells_zoom_to_the_other_lab(drawn_dataset, ruler):
    """The zoom fed to random_magnification is view_zoom of that image's own cell, by the ruler asked."""
    import tensorflow as tf

    from bloodcell.cellmask import find_cell
    from bloodcell.cellview import view_zoom
    from bloodcell.imaging import CELL_VIEW, read_image, to_model_input
    from bloodcell.pipeline import _decode, other_lab_zoom

    pairs = [(path, label) for label in ("seg_neutrophil", "monocyte")
             for path in sorted((drawn_dataset / label).iterdir())[:2]]
    decode = _decode(48, CELL_VIEW, with_zoom=True, ruler=ruler)
    for (path, label), ((image, zoom), _) in zip(pairs, tf.data.Dataset.from_tensor_slices(
            ([str(p) for p, _ in pairs], [CLASS_NAMES.index(label) for _, label in pairs])).map(decode)):
        photo = read_image(path)
        mask = find_cell(photo)
        assert zoom.numpy() == np.float32(view_zoom(mask, other_lab_zoom(label, ruler)))
        np.testing.assert_array_equal(image.numpy(), to_model_input(photo, 48, CELL_VIEW))
    # Munich cells are zoomed out towards Barcelona's scale, Barcelona cells in.
    assert other_lab_zoom("seg_neutrophil") < 1 < other_lab_zoom("monocyte")


def test_other_lab_zoom_is_the_ratio_of_the_labs_cell_sizes():
    from bloodcell.config import LAB_CELL_SIZE
    from bloodcell.pipeline import other_lab_zoom

    barcelona, munich = LAB_CELL_SIZE["PBC Barcelona"], LAB_CELL_SIZE["Munich AML"]
    assert other_lab_zoom("seg_neutrophil") == barcelona / munich < 1  # Munich cells shrink
    assert other_lab_zoom("monocyte") == munich / barcelona


def test_other_lab_zoom_by_red_cells_is_the_scanners_ratio():
    """Red cells give a milder zoom than white cells, whose sizes also carry each lab's classes."""
    from bloodcell.config import LAB_RED_CELL_SIZE
    from bloodcell.counterfactual import BY_RED_CELLS
    from bloodcell.pipeline import other_lab_zoom

    barcelona, munich = LAB_RED_CELL_SIZE["PBC Barcelona"], LAB_RED_CELL_SIZE["Munich AML"]
    assert other_lab_zoom("myeloblast", BY_RED_CELLS) == barcelona / munich
    assert other_lab_zoom("seg_neutrophil") < other_lab_zoom("seg_neutrophil", BY_RED_CELLS) < 1
    assert 1 < other_lab_zoom("basophil", BY_RED_CELLS) < other_lab_zoom("basophil")
    with pytest.raises(ValueError, match="ruler"):
        other_lab_zoom("basophil", "platelets")


def test_grey_augmentation_keeps_images_grey_and_within_the_detail_ceiling():
    import tensorflow as tf

    from bloodcell.cellview import DETAIL_CEILING, cap_detail, view_detail
    from bloodcell.pipeline import augment_colour

    rng = np.random.default_rng(3)
    grey = np.full((8, 64, 64), 225.0, np.float32)
    grey[:, 16:48, 16:48] = 100.0 + 40.0 * rng.standard_normal((8, 32, 32)).astype(np.float32)
    images = np.repeat(np.stack([cap_detail(g) for g in grey])[..., None], 3, axis=-1)
    out = augment_colour(tf.constant(images), grey=True).numpy()
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-3)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-3)
    details = [view_detail(image[..., 0]) for image in out]
    # Contrast jitter scales detail by up to 1.3; the focus never sharpens past the ceiling.
    assert max(details) <= DETAIL_CEILING * 1.3 + 0.1, details
    assert not np.allclose(out, images)


@pytest.mark.parametrize("view", ["cell-grey", "cell-fill"])
def test_cell_view_dataset_trains_on_the_views_the_app_shows(drawn_dataset, view):
    from bloodcell.imaging import CELL_VIEWS, load_model_input

    assert view in CELL_VIEWS
    files = sorted((drawn_dataset / "monocyte").iterdir())[:2]
    batch = next(iter(make_dataset(files, [2, 2], 48, batch_size=2, view=view)))[0].numpy()
    np.testing.assert_array_equal(batch, np.stack([load_model_input(f, 48, view) for f in files]))


def test_choose_twins_takes_the_share_asked():
    import tensorflow as tf

    from bloodcell.pipeline import choose_twins

    images, twins = tf.zeros((400, 2, 2, 3)), tf.ones((400, 2, 2, 3))
    assert float(tf.reduce_max(choose_twins(images, twins, 0.0))) == 0.0
    assert float(tf.reduce_min(choose_twins(images, twins, 1.0))) == 1.0
    mixed = choose_twins(images, twins, 0.5).numpy()
    # Whole views are swapped, never parts of one.
    per_view = mixed.reshape(400, -1)
    assert np.all(per_view.min(axis=1) == per_view.max(axis=1))
    assert 0.4 < per_view[:, 0].mean() < 0.6


def _drawn_looks_and_cells(drawn_dataset, classes, per_class):
    """The drawn dataset's two lab looks, some of its (path, class) pairs, and their class indices."""
    from bloodcell.counterfactual import lab_looks
    from bloodcell.data import build_manifest, scan_dataset

    looks = lab_looks(build_manifest(scan_dataset(drawn_dataset)), drawn_dataset)
    pairs = [(path, label) for label in classes for path in sorted((drawn_dataset / label).iterdir())[:per_class]]
    return looks, pairs, [CLASS_NAMES.index(label) for _, label in pairs]


def test_twin_dataset_gives_each_images_counterfactual_twin(drawn_dataset):
    """With every view a twin, the dataset yields the audit's counterfactual of each image, as an upload would."""
    from bloodcell.cellmask import find_cell
    from bloodcell.counterfactual import BY_WHITE_CELLS, counterfactual_of
    from bloodcell.imaging import CELL_VIEW, read_image, to_model_input

    looks, pairs, labels = _drawn_looks_and_cells(drawn_dataset, ("basophil", "seg_neutrophil"), 2)
    images, got_labels = next(iter(make_dataset([p for p, _ in pairs], labels, 32, batch_size=4, view=CELL_VIEW,
                                                twin_share=1.0, looks=looks)))
    assert got_labels.numpy().tolist() == labels
    for index, ((path, label), image) in enumerate(zip(pairs, images.numpy())):
        photo = read_image(path)
        twin = counterfactual_of(photo, label, looks, index, find_cell(photo), ruler=BY_WHITE_CELLS)
        np.testing.assert_array_equal(image, to_model_input(twin, 32, CELL_VIEW))
        assert np.abs(image - to_model_input(photo, 32, CELL_VIEW)).mean() > 1
    plain, _ = next(iter(make_dataset([p for p, _ in pairs], labels, 32, batch_size=4, view=CELL_VIEW,
                                      twin_share=0.0, looks=looks)))
    np.testing.assert_array_equal(plain.numpy()[0], to_model_input(read_image(pairs[0][0]), 32, CELL_VIEW))


def test_twin_dataset_restains_twins_by_parts_when_asked(drawn_dataset):
    from bloodcell.cellmask import find_cell
    from bloodcell.counterfactual import BY_WHITE_CELLS, counterfactual_of
    from bloodcell.imaging import CELL_VIEW, read_image, to_model_input

    looks, pairs, labels = _drawn_looks_and_cells(drawn_dataset, ("monocyte", "seg_neutrophil"), 1)
    images, _ = next(iter(make_dataset([p for p, _ in pairs], labels, 32, batch_size=2, view=CELL_VIEW,
                                       twin_share=1.0, twin_stain_parts=True, looks=looks)))
    for index, ((path, label), image) in enumerate(zip(pairs, images.numpy())):
        photo = read_image(path)
        by_parts = counterfactual_of(photo, label, looks, index, find_cell(photo), ruler=BY_WHITE_CELLS,
                                     stain_parts=True)
        np.testing.assert_array_equal(image, to_model_input(by_parts, 32, CELL_VIEW))
        whole = counterfactual_of(photo, label, looks, index, find_cell(photo), ruler=BY_WHITE_CELLS)
        assert np.abs(image - to_model_input(whole, 32, CELL_VIEW)).mean() > 0.5


def test_twin_dataset_zooms_twins_by_the_magnification_ruler_asked(drawn_dataset):
    """celltwin's twins are zoomed by the white cells; `magnification_ruler` red cells zooms them by red cells."""
    import dataclasses

    from bloodcell.cellmask import find_cell
    from bloodcell.counterfactual import BY_RED_CELLS, BY_WHITE_CELLS, counterfactual_of, lab_zoom
    from bloodcell.imaging import CELL_VIEW, read_image, to_model_input

    looks, pairs, labels = _drawn_looks_and_cells(drawn_dataset, ("basophil", "seg_neutrophil"), 1)
    # Red cells that say the labs' magnifications differ far more than their white cells do.
    looks = {lab: dataclasses.replace(look, red_cell_size=size)
             for (lab, look), size in zip(sorted(looks.items()), (0.15, 0.3))}
    own, other = looks.values()
    assert abs(lab_zoom(own, other, BY_RED_CELLS) - lab_zoom(own, other, BY_WHITE_CELLS)) > 0.3
    images, _ = next(iter(make_dataset([p for p, _ in pairs], labels, 32, batch_size=2, view=CELL_VIEW,
                                       twin_share=1.0, magnification_ruler=BY_RED_CELLS, looks=looks)))
    for index, ((path, label), image) in enumerate(zip(pairs, images.numpy())):
        photo = read_image(path)
        by_red = counterfactual_of(photo, label, looks, index, find_cell(photo), ruler=BY_RED_CELLS)
        np.testing.assert_array_equal(image, to_model_input(by_red, 32, CELL_VIEW))
        by_white = counterfactual_of(photo, label, looks, index, find_cell(photo), ruler=BY_WHITE_CELLS)
        assert np.abs(image - to_model_input(by_white, 32, CELL_VIEW)).mean() > 0.5


def test_choose_twins_splits_the_draw_between_twins_and_round_trips():
    import tensorflow as tf

    from bloodcell.pipeline import choose_twins

    images, twins, trips = tf.zeros((2000, 2, 2, 3)), tf.ones((2000, 2, 2, 3)), tf.fill((2000, 2, 2, 3), 2.0)
    tf.random.set_seed(3)
    without = choose_twins(images, twins, 0.5).numpy()
    tf.random.set_seed(3)
    # No round trips asked: the same draw gives the same views as before they existed.
    np.testing.assert_array_equal(choose_twins(images, twins, 0.5, trips, 0.0).numpy(), without)
    mixed = choose_twins(images, twins, 0.5, trips, 0.25).numpy().reshape(2000, -1)
    assert np.all(mixed.min(axis=1) == mixed.max(axis=1))
    shares = np.bincount(mixed[:, 0].astype(int), minlength=3) / 2000
    np.testing.assert_allclose(shares, [0.25, 0.5, 0.25], atol=0.04)
    assert float(tf.reduce_min(choose_twins(images, twins, 0.0, trips, 1.0))) == 2.0


def test_round_trip_shows_the_cell_in_its_own_labs_look_rendered_twice(drawn_dataset):
    """The round trip is the twin rendered back into the photo's own look, as the dataset yields it."""
    from bloodcell.cellmask import find_cell
    from bloodcell.counterfactual import BY_WHITE_CELLS, counterfactual_of, round_trip_of
    from bloodcell.imaging import CELL_VIEW, read_image, to_model_input

    looks, pairs, labels = _drawn_looks_and_cells(drawn_dataset, ("monocyte", "myeloblast"), 1)
    images, _ = next(iter(make_dataset([p for p, _ in pairs], labels, 32, batch_size=2, view=CELL_VIEW,
                                       twin_share=1e-9, round_trip_share=1 - 1e-9, looks=looks)))
    for index, ((path, label), image) in enumerate(zip(pairs, images.numpy())):
        photo = read_image(path)
        mask = find_cell(photo)
        twin = counterfactual_of(photo, label, looks, index, mask, ruler=BY_WHITE_CELLS)
        back = round_trip_of(twin, label, looks, index)
        np.testing.assert_array_equal(image, to_model_input(back, 32, CELL_VIEW))
        # Back in its own lab's look: its field is nearer the photo's than the twin's is.
        field = ~find_cell(back).cell
        own, there = (np.median(np.asarray(im.convert("RGB"), np.float32)[field], axis=0)
                      for im in (photo, twin))
        here = np.median(np.asarray(back.convert("RGB"), np.float32)[field], axis=0)
        assert np.abs(here - own).sum() < np.abs(here - there).sum()


def test_twin_pairs_put_each_view_and_its_twin_in_one_batch(drawn_dataset):
    """Rows i and i + n of a paired batch are one image in its own look and in the other lab's."""
    from bloodcell.cellmask import find_cell
    from bloodcell.counterfactual import BY_WHITE_CELLS, counterfactual_of
    from bloodcell.imaging import CELL_VIEW, read_image, to_model_input

    looks, pairs, labels = _drawn_looks_and_cells(drawn_dataset, ("monocyte", "myeloblast", "erythroblast"), 1)
    batches = list(make_dataset([p for p, _ in pairs], labels, 32, batch_size=2, view=CELL_VIEW,
                                twin_pairs=True, looks=looks))
    assert [tuple(x.shape[:1]) for x, _ in batches] == [(4,), (2,)]  # the last batch holds one pair
    assert [y.numpy().tolist() for _, y in batches] == [labels[:2] * 2, labels[2:] * 2]
    images = [batches[0][0].numpy()[:2], batches[1][0].numpy()[:1]]
    twins = [batches[0][0].numpy()[2:], batches[1][0].numpy()[1:]]
    for index, ((path, label), image, twin) in enumerate(zip(pairs, np.concatenate(images), np.concatenate(twins))):
        photo = read_image(path)
        np.testing.assert_array_equal(image, to_model_input(photo, 32, CELL_VIEW))
        expected_twin = counterfactual_of(photo, label, looks, index, find_cell(photo), ruler=BY_WHITE_CELLS)
        np.testing.assert_array_equal(twin, to_model_input(expected_twin, 32, CELL_VIEW))


@pytest.mark.parametrize("options, message", [
    ({"view": "full", "twin_share": 0.5, "looks": {}}, "cell views"),
    ({"view": "cell", "twin_share": 0.5, "twin_pairs": True, "looks": {}}, "not both"),
    ({"view": "cell", "twin_pairs": True}, "looks"),
    ({"view": "full", "twin_pairs": True, "looks": {}}, "cell views"),
    ({"view": "cell", "twin_share": 0.5}, "looks"),
    ({"view": "cell", "twin_share": 0.5, "looks": {}, "magnification_transfer": 0.5}, "not both"),
    ({"view": "cell", "round_trip_share": 0.5, "looks": {}}, "go with twins"),
    ({"view": "cell", "twin_share": 0.6, "round_trip_share": 0.5, "looks": {}}, "cannot exceed 1"),
    ({"view": "cell", "twin_stain_parts": True, "looks": {}}, "give twin_share or twin_pairs"),
])
def test_twins_refuse_what_they_cannot_do(drawn_dataset, options, message):
    files = sorted((drawn_dataset / "monocyte").iterdir())[:2]
    with pytest.raises(ValueError, match=message):
        make_dataset(files, [2, 2], 32, **options)


def test_fixed_focus_shows_every_view_at_one_of_the_levels():
    import tensorflow as tf
    from scipy import ndimage

    from bloodcell.cellview import GREY_WEIGHTS, view_detail
    from bloodcell.pipeline import fixed_focus

    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[:96, :96]
    inside = (rows - 48) ** 2 + (cols - 48) ** 2 < 32 ** 2
    texture = ndimage.gaussian_filter(rng.uniform(0, 255, (96, 96)), 1.5)
    sharp = np.repeat(np.where(inside, 70 + 0.6 * texture, 225.0)[..., None], 3, axis=-1).astype(np.float32)
    views = np.stack([sharp, ndimage.gaussian_filter(sharp, (1.2, 1.2, 0))] * 8)
    tf.random.set_seed(0)
    focused = fixed_focus(tf.constant(views), (5.7, 12.5)).numpy()
    details = np.array([view_detail(view @ GREY_WEIGHTS) for view in focused])
    near = np.minimum(np.abs(details - 5.7) / 5.7, np.abs(details - 12.5) / 12.5)
    assert near.max() < 0.15, details
    assert (details < 9).any() and (details > 9).any()  # both levels drawn


def test_focus_levels_need_the_colour_augmentation(tmp_path):
    with pytest.raises(ValueError, match="colour_augment"):
        make_dataset([tmp_path / "a.png"], [0], 32, focus_levels=(5.7, 12.5))


def _seeded_batches(files: list, labels: list[int], seed: int) -> np.ndarray:
    import keras

    keras.utils.set_random_seed(seed)
    dataset = make_dataset(files, labels, 48, batch_size=8, view="cell", shuffle=True, augment=True, seed=seed,
                           colour_augment=True, magnification_transfer=0.5, random_texture=0.5)
    return np.concatenate([images.numpy() for images, _ in dataset])


def test_a_seeded_training_dataset_draws_the_same_augmentations_every_time(drawn_dataset):
    files = [path for label in CLASS_NAMES for path in sorted((drawn_dataset / label).iterdir())[:6]]
    labels = [CLASS_NAMES.index(path.parent.name) for path in files]
    first, again = _seeded_batches(files, labels, 7), _seeded_batches(files, labels, 7)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, _seeded_batches(files, labels, 8))
