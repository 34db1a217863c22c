"""Red cells as a ruler: measured on drawn fields whose red cells have a known size."""

import numpy as np
import pytest
from drawn_fields import LOOKS, draw_field, photographed_smaller
from PIL import Image, ImageDraw

from bloodcell.config import LAB_RED_CELL_SIZE, SOURCE_LAB
from bloodcell.counterfactual import (BY_RED_CELLS, BY_WHITE_CELLS, lab_look, lab_zoom, lab_looks,
                                      magnification_ruler)
from bloodcell.redcells import (MEASURE_SIDE, lab_red_cell_sizes, magnification_note, photo_red_cell_size,
                               red_cell_diameters)

# draw_field's red cells: radius 0.09 of the side.
DRAWN_DIAMETER = 0.18


@pytest.mark.parametrize("look", sorted(LOOKS))
def test_isolated_red_cells_measure_their_drawn_diameter(look):
    image, _ = draw_field(look, seed=3)
    diameters = red_cell_diameters(image)
    assert len(diameters) >= 3
    assert np.allclose(diameters, DRAWN_DIAMETER, rtol=0.04)


def draw_white_cell(draw: ImageDraw.ImageDraw, colours: dict, centre=(180, 180), radius=60) -> None:
    x, y = centre
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colours["cytoplasm"])
    draw.ellipse([x - 0.55 * radius, y - 0.5 * radius, x + 0.55 * radius, y + 0.5 * radius],
                 fill=colours["nucleus"])


def test_touching_cut_and_tiny_blobs_are_not_red_cells():
    colours = LOOKS["peach"]
    image = Image.new("RGB", (360, 360), colours["background"])
    draw = ImageDraw.Draw(image)
    draw_white_cell(draw, colours, centre=(200, 220), radius=50)
    r = 32
    draw.ellipse([40 - r, 60 - r, 40 + r, 60 + r], fill=colours["red_cell"])      # lone: measured
    draw.ellipse([200 - r, 60 - r, 200 + r, 60 + r], fill=colours["red_cell"])    # two touching
    draw.ellipse([258 - r, 60 - r, 258 + r, 60 + r], fill=colours["red_cell"])
    draw.ellipse([-20, 200, -20 + 2 * r, 200 + 2 * r], fill=colours["red_cell"])  # cut by the edge
    draw.ellipse([150, 250, 160, 260], fill=colours["red_cell"])                  # a platelet
    assert np.allclose(red_cell_diameters(image), (2 * r + 1) / 360, rtol=0.03)


def test_a_blank_field_has_no_red_cells():
    assert red_cell_diameters(Image.new("RGB", (200, 200), LOOKS["peach"]["background"])) == []


def test_without_a_white_cell_a_lone_disc_is_no_red_cell():
    """A drawn disc with no stained nucleus beside it is the subject, not a ruler."""
    colours = LOOKS["peach"]
    image = Image.new("RGB", (360, 360), colours["background"])
    ImageDraw.Draw(image).ellipse([120, 120, 200, 200], fill=colours["red_cell"])
    assert red_cell_diameters(image) == []
    draw_white_cell(ImageDraw.Draw(image), colours, centre=(260, 260), radius=50)
    assert red_cell_diameters(image) == pytest.approx([81 / 360], rel=0.03)


def test_a_disc_wider_than_the_white_cell_is_no_red_cell():
    colours = LOOKS["peach"]
    image = Image.new("RGB", (480, 480), colours["background"])
    draw = ImageDraw.Draw(image)
    draw_white_cell(draw, colours, centre=(360, 360), radius=30)   # 61 pixels across
    draw.ellipse([40, 40, 200, 200], fill=colours["red_cell"])      # 161: not a red cell
    draw.ellipse([300, 60, 360, 120], fill=colours["red_cell"])     # 61: measured
    assert red_cell_diameters(image) == pytest.approx([61 / 480], rel=0.03)


def test_the_zoom_between_two_labs_follows_their_red_cells():
    """A lab photographing at 0.8 of the other's magnification: the red cells give the ratio."""
    sharp = [draw_field("peach", seed=seed)[0] for seed in range(6)]
    far = [photographed_smaller(image, 0.8, "blue-white") for image in
           (draw_field("blue-white", seed=seed)[0] for seed in range(6))]
    near_look, far_look = lab_look(sharp), lab_look(far)
    assert near_look.red_cell_size == pytest.approx(DRAWN_DIAMETER, rel=0.04)
    assert lab_zoom(near_look, far_look) == pytest.approx(0.8, rel=0.04)
    assert lab_zoom(far_look, near_look, BY_WHITE_CELLS) == pytest.approx(
        near_look.cell_size / far_look.cell_size)


def test_without_red_cells_the_ruler_is_the_white_cells():
    looks = {"a": lab_look([draw_field("peach")[0]]), "b": lab_look([draw_field("blue-white")[0]])}
    assert magnification_ruler(looks) == BY_RED_CELLS
    looks["b"].red_cell_size = None
    assert magnification_ruler(looks) == BY_WHITE_CELLS
    assert lab_zoom(looks["a"], looks["b"]) == looks["b"].cell_size / looks["a"].cell_size
    with pytest.raises(ValueError, match="ruler"):
        magnification_ruler(looks, "platelets")


def test_the_labs_red_cells_differ_less_than_their_white_cells(real_data):
    """The two labs' white cells differ in size by more than their magnifications do."""
    from bloodcell.data import build_manifest, scan_dataset

    looks = lab_looks(build_manifest(scan_dataset(real_data)), real_data)
    barcelona, munich = looks["PBC Barcelona"], looks["Munich AML"]
    assert set(looks) == set(SOURCE_LAB.values())
    # Measured on all training images: 0.203 and 0.249 of the side, a ratio of 0.82.
    assert 0.19 < barcelona.red_cell_size < 0.22 and 0.23 < munich.red_cell_size < 0.27
    assert lab_zoom(munich, barcelona) > lab_zoom(munich, barcelona, BY_WHITE_CELLS) + 0.03
    # The training recipes' ruler (config.LAB_RED_CELL_SIZE, from every training image) agrees.
    assert barcelona.red_cell_size == pytest.approx(LAB_RED_CELL_SIZE["PBC Barcelona"], rel=0.02)
    assert munich.red_cell_size == pytest.approx(LAB_RED_CELL_SIZE["Munich AML"], rel=0.02)


def test_each_labs_red_cells_are_measured_on_its_training_images(tmp_path):
    """Munich's fields drawn at 0.8 of Barcelona's magnification: its red cells measure 0.8 as large."""
    from bloodcell.config import CLASS_NAMES
    from bloodcell.data import build_manifest, scan_dataset

    for index, label in enumerate(CLASS_NAMES):
        (tmp_path / label).mkdir()
        for seed in range(index * 10, index * 10 + 5):
            if SOURCE_LAB[label] == "PBC Barcelona":
                image = draw_field("peach", seed=seed)[0]
            else:
                image = photographed_smaller(draw_field("blue-white", seed=seed)[0], 0.8, "blue-white")
            image.save(tmp_path / label / f"{seed}.png")
    manifest = build_manifest(scan_dataset(tmp_path))
    sizes = lab_red_cell_sizes(manifest, tmp_path)
    assert sizes["PBC Barcelona"] == pytest.approx(DRAWN_DIAMETER, rel=0.04)
    assert sizes["Munich AML"] == pytest.approx(0.8 * DRAWN_DIAMETER, rel=0.04)
    assert lab_red_cell_sizes(manifest, tmp_path, per_lab=2).keys() == sizes.keys()


def test_a_photos_magnification_is_read_against_the_training_photos():
    """Drawn red cells span 0.18 of the side: within the training range; shrunk to 0.6, below it."""
    image, _ = draw_field("peach", seed=4)
    usual = photo_red_cell_size(image)
    assert usual == pytest.approx(DRAWN_DIAMETER, rel=0.04)
    assert "one the models have seen" in magnification_note(usual)
    smaller = photo_red_cell_size(photographed_smaller(image, 0.6, "peach"))
    assert smaller == pytest.approx(0.6 * DRAWN_DIAMETER, rel=0.05)
    assert "lower magnification" in magnification_note(smaller) and "trust the answer less" in magnification_note(smaller)
    assert "2.1× closer" in magnification_note(0.1, zoom=2.1)  # framed (bloodcell.framing)
    assert "higher magnification" in magnification_note(0.35)
    assert magnification_note(None) is None and magnification_note(float("nan")) is None


def test_a_large_photo_measures_as_its_smaller_copy():
    """A phone photo is measured on a working copy: the same fraction, not a second of work."""
    image, _ = draw_field("peach", seed=3)
    large = image.resize((image.width * 6, image.height * 6), Image.Resampling.BICUBIC)
    assert min(large.size) > MEASURE_SIDE
    assert photo_red_cell_size(large) == pytest.approx(photo_red_cell_size(image), rel=0.03)
    assert photo_red_cell_size(large) == pytest.approx(DRAWN_DIAMETER, rel=0.04)


@pytest.mark.parametrize("size", [(1, 1), (3, 40), (12, 12)])
def test_tiny_photos_have_no_red_cells_to_measure(size):
    noise = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    assert photo_red_cell_size(Image.fromarray(noise)) is None
