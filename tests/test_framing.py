"""Framing: a photo at a lower magnification is cropped around its cell to the training one."""

import numpy as np
import pytest
from drawn_fields import LOOKS, draw_field, photographed_smaller
from PIL import Image, ImageDraw

from bloodcell.cellmask import find_cell
from bloodcell.framing import MIN_RULER_RED_CELLS, REFRAME_BELOW, TARGET_RED_CELL_SIZE, frame_photo
from bloodcell.imaging import read_image, to_model_input
from bloodcell.redcells import photo_red_cell_size, red_cell_diameters

DRAWN_DIAMETER = 0.18  # the red cells of draw_field and small_cell_field, over the side


def fractions(box, size):
    """A pixel box as fractions of the photo's width and height, as Analysis.view_box gives it."""
    (left, top, right, bottom), (width, height) = box, size
    return left / width, top / height, right / width, bottom / height


def small_cell_field(look: str = "peach", size: int = 360) -> Image.Image:
    """A white cell 0.3 of the side across (a small one, as an erythroblast) ringed by six lone red cells."""
    colours = LOOKS[look]
    image = Image.new("RGB", (size, size), colours["background"])
    draw = ImageDraw.Draw(image)
    centre, white, red = size / 2, 0.15 * size, DRAWN_DIAMETER / 2 * size
    for angle in np.linspace(0, 2 * np.pi, 6, endpoint=False):
        x, y = centre + 0.3 * size * np.cos(angle), centre + 0.3 * size * np.sin(angle)
        draw.ellipse([x - red, y - red, x + red, y + red], fill=colours["red_cell"])
    draw.ellipse([centre - white, centre - white, centre + white, centre + white], fill=colours["cytoplasm"])
    draw.ellipse([centre - 0.6 * white, centre - 0.5 * white, centre + 0.6 * white, centre + 0.5 * white],
                 fill=colours["nucleus"])
    return image


@pytest.mark.parametrize("field, zoom", [("large cell", 0.6), ("small cell", 0.5), ("small cell", 0.4)])
def test_a_field_photographed_smaller_is_cropped_until_its_red_cells_match_the_training_photos(field, zoom):
    field = draw_field("peach", seed=3)[0] if field == "large cell" else small_cell_field()
    smaller = photographed_smaller(field, zoom, "peach")
    assert photo_red_cell_size(smaller) == pytest.approx(DRAWN_DIAMETER * zoom, rel=0.08)

    framing = frame_photo(smaller)

    assert framing.reframed and framing.red_cells >= MIN_RULER_RED_CELLS
    assert framing.zoom == pytest.approx(TARGET_RED_CELL_SIZE / (DRAWN_DIAMETER * zoom), rel=0.08)
    assert framing.image.size == (framing.box[2] - framing.box[0], framing.box[3] - framing.box[1])
    assert framing.image.width == framing.image.height
    assert photo_red_cell_size(framing.image) == pytest.approx(TARGET_RED_CELL_SIZE, rel=0.1)
    # The whole white cell is in the crop, and the mask is the crop's own.
    assert framing.mask.found and framing.mask.cell.shape == framing.image.size[::-1]
    whole = find_cell(smaller).cell
    left, top, right, bottom = framing.box
    assert whole[top:bottom, left:right].sum() == whole.sum()


def test_framing_a_framed_photo_changes_nothing():
    smaller = photographed_smaller(small_cell_field("blue-white"), 0.5, "blue-white")
    once = frame_photo(smaller)
    twice = frame_photo(once.image)
    assert once.reframed and not twice.reframed and twice.image is once.image


@pytest.mark.parametrize("look", ["peach", "blue-white"])
def test_a_photo_at_the_training_magnification_is_left_as_it_is(look):
    field, _ = draw_field(look, seed=2)
    assert photo_red_cell_size(field) >= REFRAME_BELOW
    framing = frame_photo(field)
    assert framing.image is field and framing.zoom == 1.0 and framing.box is None


def test_a_higher_magnification_is_not_widened():
    field, _ = draw_field("peach", seed=4)
    closer = field.crop((60, 60, 300, 300)).resize(field.size)
    framing = frame_photo(closer)
    assert not framing.reframed and framing.image is closer


def test_one_or_two_small_blobs_are_no_ruler():
    """A fragment or a platelet clump must not send a photo to be cropped."""
    image = Image.new("RGB", (360, 360), (238, 222, 205))
    draw = ImageDraw.Draw(image)
    draw.ellipse([120, 120, 240, 240], fill=(200, 160, 190))
    draw.ellipse([150, 150, 210, 210], fill=(90, 40, 120))
    for x, y in [(40, 40), (310, 310)]:  # two small lone discs, 0.12 of the side
        draw.ellipse([x - 22, y - 22, x + 22, y + 22], fill=(215, 120, 120))
    diameters = red_cell_diameters(image)
    assert 0 < len(diameters) < MIN_RULER_RED_CELLS and max(diameters) < REFRAME_BELOW
    assert not frame_photo(image).reframed


def test_no_white_cell_no_reframing():
    blank = Image.new("RGB", (300, 200), (230, 230, 230))
    framing = frame_photo(blank)
    assert not framing.reframed and framing.red_cell_size is None and framing.red_cells == 0


def test_the_crop_is_a_square_of_one_over_zoom_of_the_photo():
    smaller = photographed_smaller(small_cell_field(), 0.5, "peach")
    framing = frame_photo(smaller)
    left, top, right, bottom = fractions(framing.box, smaller.size)
    assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
    assert right - left == pytest.approx(1 / framing.zoom, rel=0.02)


def test_red_cells_of_a_photo_at_a_third_of_the_magnification_are_still_measured():
    """The floor that rejects platelets follows the white cell, not the photo's side.

    At the training magnification (the floor 0.1 of the side) these red cells
    would measure 0.06 and count as platelets.
    """
    third = photographed_smaller(small_cell_field("blue-white"), 1 / 3, "blue-white")
    diameters = red_cell_diameters(third)
    assert len(diameters) >= MIN_RULER_RED_CELLS
    assert np.median(diameters) == pytest.approx(DRAWN_DIAMETER / 3, rel=0.1)


def test_every_prediction_path_sees_the_framed_photo(shipped_models, tmp_path):
    """The CLI's batch, one file, and the app's service: the same crop, zoom and answer."""
    from bloodcell.inference import Classifier
    from bloodcell.service import ModelService

    smaller = photographed_smaller(small_cell_field(), 0.5, "peach")
    path = tmp_path / "wide.png"
    smaller.save(path)
    framing = frame_photo(smaller)
    classifier = Classifier.load("cellfocus", shipped_models)
    expected = classifier.predict_proba(to_model_input(framing.image, classifier.input_size, classifier.view,
                                                       framing.mask)[None])[0]

    [batch] = classifier.predict_sources([path])
    assert batch.zoom == pytest.approx(framing.zoom) and batch.red_cell_size == pytest.approx(framing.red_cell_size)
    assert np.allclose(batch.probabilities, expected, atol=1e-5)
    assert np.allclose(classifier.prepare(path.read_bytes()), classifier.prepare(path))
    assert np.allclose(classifier.assess("wide", smaller).probabilities, expected, atol=1e-5)

    analysis = ModelService(classifier).analyse("wide.png", path.read_bytes())
    assert analysis.zoom == pytest.approx(framing.zoom) and np.allclose(analysis.probabilities, expected, atol=1e-5)
    # The square the cell view took, placed back in the uploaded photo: inside the crop.
    left, top, right, bottom = analysis.view_box
    crop_left, crop_top, crop_right, crop_bottom = fractions(framing.box, smaller.size)
    assert crop_left - 1e-6 <= left < right <= crop_right + 1e-6
    assert crop_top - 1e-6 <= top < bottom <= crop_bottom + 1e-6


def test_a_whole_image_model_is_shown_the_crop_and_its_heatmap_lies_over_it(tiny_models_dir):
    from bloodcell.service import ModelService

    smaller = photographed_smaller(small_cell_field(), 0.5, "peach")
    framing = frame_photo(smaller)
    analysis = ModelService.load("cnn", tiny_models_dir).analyse("wide", smaller)
    assert analysis.view_box == pytest.approx(fractions(framing.box, smaller.size))
    assert analysis.image_size == smaller.size
    as_given = ModelService.load("cnn", tiny_models_dir).analyse("field", small_cell_field())
    assert as_given.view_box is None and as_given.zoom == 1.0


@pytest.mark.parametrize("zoom, least_framed", [(2.0, 0.75), (3.0, 0.33)])
def test_a_real_cell_at_a_lower_magnification_is_seen_at_the_training_one(real_data, shipped_models, zoom,
                                                                          least_framed):
    """Test-split monocytes shown by a camera at 1/2 and 1/3 of the magnification (benchmarks/magnification.py).

    At a third, fewer photos keep three red cells clear of each other and of
    the edge, so fewer have a ruler.
    """
    from benchmarks.magnification import wider_field
    from bloodcell.data import load_manifest, manifest_path
    from bloodcell.inference import Classifier

    classifier = Classifier.load("cellfocus", shipped_models)
    monocytes = [path for path, label in load_manifest(manifest_path(shipped_models)).paths("test")
                 if label == "monocyte"][:12]
    framed, right = 0, 0
    for path in monocytes:
        photo = read_image(real_data / path)
        wide = wider_field(photo, zoom)
        framing = frame_photo(wide)
        if framing.reframed:
            framed += 1
            # Cropped back to about the training magnification (the crop never cuts the cell).
            assert photo_red_cell_size(framing.image) == pytest.approx(TARGET_RED_CELL_SIZE, rel=0.2)
            right += classifier.assess(path, wide).predicted_class == "monocyte"
    assert framed >= least_framed * len(monocytes)
    assert right >= framed - 2


def test_the_benchmarks_wider_field_shrinks_the_cell_and_keeps_the_photo_size():
    from benchmarks.magnification import wider_field

    field = small_cell_field()
    wide = wider_field(field, 2.0)
    assert wide.size == field.size
    assert find_cell(wide).cell_side() == pytest.approx(find_cell(field).cell_side() / 2, rel=0.1)
    assert photo_red_cell_size(wide) == pytest.approx(DRAWN_DIAMETER / 2, rel=0.1)


def test_the_benchmarks_closer_field_enlarges_the_cell_and_keeps_the_photo_size():
    from benchmarks.magnification import closer_field

    field = small_cell_field()
    close = closer_field(field, 1.5)
    assert close.size == field.size
    assert find_cell(close).cell_side() == pytest.approx(find_cell(field).cell_side() * 1.5, rel=0.1)
    # Framing leaves a closer photo as it is: cropping cannot widen it.
    assert not frame_photo(close).reframed


def test_a_field_of_several_cells_is_not_cropped_to_one_of_them():
    """The abstention's "several cells" must survive: framing would otherwise pick one cell and hide the rest."""
    cell = photographed_smaller(small_cell_field(), 0.5, "peach")
    field = Image.new("RGB", (cell.width * 2, cell.height * 2))
    for x in (0, cell.width):
        for y in (0, cell.height):
            field.paste(cell, (x, y))
    assert find_cell(field).problem is not None
    framing = frame_photo(field)
    assert not framing.reframed and framing.image is field and framing.mask.problem is not None
