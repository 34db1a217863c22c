"""A photo rendered in each lab's look: the look's numbers land, the cell stays, bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bloodcell.cellmask import find_cell
from bloodcell.config import LAB_RED_CELL_SIZE
from bloodcell.framing import frame_photo
from bloodcell.lookswap import (LOOKS_FILE, LookNumbers, LooksFileError, field_mask, load_looks, measure_look,
                                render_in_look, render_in_looks, save_looks)
from bloodcell.redcells import red_cell_diameters
from bloodcell.stain import stain_stats
from drawn_fields import draw_field


def drawn_look(look: str, lab: str, red_cell_size: float, side: int = 400) -> LookNumbers:
    """A lab's look measured on drawn fields of one look, at a chosen magnification and photo size."""
    measured = measure_look(lab, [draw_field(look, seed=seed)[0] for seed in range(4)])
    return LookNumbers(lab, measured.cell_stain, measured.field_stain, measured.detail, red_cell_size, side)


@pytest.fixture(scope="module")
def blue_white_look() -> LookNumbers:
    return drawn_look("blue-white", "Munich AML", red_cell_size=0.25)


def test_the_rendering_takes_the_looks_cell_and_field_colours(blue_white_look):
    photo, _ = draw_field("peach", seed=11)
    framing = frame_photo(photo)
    rendering = render_in_look(framing.image, framing.mask, None, blue_white_look)
    rendered = np.asarray(rendering.image, np.float32)
    mask = find_cell(rendering.image)
    assert mask.found
    cell = stain_stats(rendered, mask.cell).mean
    field = stain_stats(rendered, field_mask(mask)).mean
    before = stain_stats(np.asarray(photo, np.float32), field_mask(framing.mask)).mean
    # LAB distance to the look's means: a few units, where the peach field started far away.
    assert np.linalg.norm(np.subtract(field, blue_white_look.field_stain.mean)) < 3
    assert np.linalg.norm(np.subtract(before, blue_white_look.field_stain.mean)) > 10
    assert np.linalg.norm(np.subtract(cell, blue_white_look.cell_stain.mean)) < 6
    assert min(rendering.image.size) == blue_white_look.side


def test_red_cells_scale_the_photo_to_the_looks_magnification(blue_white_look):
    photo, _ = draw_field("peach", seed=12)
    framing = frame_photo(photo)
    assert framing.red_cells >= 3  # drawn red cells measure 0.18 of the side
    [rendering] = render_in_looks(framing, {"Munich AML": blue_white_look})
    assert rendering.ruler and rendering.scale == pytest.approx(0.25 / framing.red_cell_size)
    measured = np.median(red_cell_diameters(rendering.image))
    assert measured == pytest.approx(0.25, rel=0.06)
    # The white cell stays in the middle of the frame and whole.
    mask = find_cell(rendering.image)
    assert mask.found and mask.problem is None


def test_without_a_red_cell_ruler_the_magnification_is_kept(blue_white_look):
    photo, _ = draw_field("peach", seed=13)
    framing = frame_photo(photo)
    rendering = render_in_look(framing.image, framing.mask, None, blue_white_look)
    assert not rendering.ruler and rendering.scale == 1.0
    # Only resized to the look's photo size: the cell spans the same share of the side.
    share = find_cell(rendering.image).cell_side() / min(rendering.image.size)
    assert share == pytest.approx(framing.mask.cell_side() / min(photo.size), rel=0.05)


def test_a_photo_scaled_down_is_framed_by_its_own_field_not_a_flat_border(blue_white_look):
    photo, _ = draw_field("peach", seed=14)
    framing = frame_photo(photo)
    rendering = render_in_look(framing.image, framing.mask, 0.4, blue_white_look)  # shown at 0.625x
    assert rendering.scale == pytest.approx(0.625)
    border = np.asarray(rendering.image, np.float32)[:8].reshape(-1, 3)
    assert border.std(axis=0).max() > 5, "mirrored red cells and field, not one flat colour"


def test_a_camera_sized_photo_is_rendered_at_the_looks_size(blue_white_look):
    from PIL import Image

    photo, _ = draw_field("peach", seed=15)
    framing = frame_photo(photo.resize((2400, 2400), Image.Resampling.LANCZOS))
    [rendering] = render_in_looks(framing, {"Munich AML": blue_white_look})
    assert min(rendering.image.size) == blue_white_look.side
    assert np.median(red_cell_diameters(rendering.image)) == pytest.approx(0.25, rel=0.06)


def test_no_white_cell_is_refused(blue_white_look):
    from PIL import Image

    blank = Image.new("RGB", (200, 200), (240, 230, 220))
    with pytest.raises(ValueError, match="no white cell"):
        render_in_look(blank, find_cell(blank), None, blue_white_look)


def test_looks_survive_a_round_trip_through_their_file(tmp_path, blue_white_look):
    path = save_looks({blue_white_look.lab: blue_white_look}, tmp_path / LOOKS_FILE)
    assert load_looks(path) == {blue_white_look.lab: blue_white_look}


@pytest.mark.parametrize("content, words", [
    (None, "python -m bloodcell looks"),
    ("not json", "cannot read"),
    (json.dumps({"format": 99, "looks": []}), "format"),
    (json.dumps({"format": 1, "looks": [{"lab": "x"}]}), "malformed"),
])
def test_a_missing_or_damaged_looks_file_is_one_clear_error(tmp_path, content, words):
    path = tmp_path / LOOKS_FILE
    if content is not None:
        path.write_text(content)
    with pytest.raises(LooksFileError, match=words):
        load_looks(path)


def test_the_shipped_looks_are_what_the_command_measures(capsys, tmp_path, real_data, shipped_models):
    """models/lab_looks.json is reproduced from the dataset by `python -m bloodcell looks`."""
    import shutil

    from bloodcell.cli import main

    shutil.copy(shipped_models / "split.json", tmp_path / "split.json")
    assert main(["looks", "--data", str(real_data), "--models-dir", str(tmp_path)]) == 0
    assert "saved to" in capsys.readouterr().out
    measured, shipped = load_looks(tmp_path / LOOKS_FILE), load_looks(shipped_models / LOOKS_FILE)
    assert measured.keys() == shipped.keys() == LAB_RED_CELL_SIZE.keys()
    for lab in shipped:
        np.testing.assert_allclose(measured[lab].cell_stain.mean, shipped[lab].cell_stain.mean, atol=1e-3)
        np.testing.assert_allclose(measured[lab].field_stain.std, shipped[lab].field_stain.std, atol=1e-3)
        assert measured[lab].detail == pytest.approx(shipped[lab].detail, abs=1e-3)
        assert measured[lab].side == shipped[lab].side
    # The scanners' signatures: Barcelona's cells are sharper, its photos smaller.
    assert shipped["PBC Barcelona"].detail > 2 * shipped["Munich AML"].detail
    assert shipped["PBC Barcelona"].side < shipped["Munich AML"].side


def test_the_looks_command_without_a_dataset_is_one_line(capsys, tmp_path, shipped_models):
    import shutil

    from bloodcell.cli import main

    shutil.copy(shipped_models / "split.json", tmp_path / "split.json")
    assert main(["looks", "--data", str(tmp_path / "nowhere"), "--models-dir", str(tmp_path)]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
