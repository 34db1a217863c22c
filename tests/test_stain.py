"""LAB conversion and Reinhard stain transfer."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.stain import (StainStats, average_stats, lab_to_rgb, part_relation, rgb_to_lab, stain_stats,
                            transfer_stain, transfer_stain_parts)


def test_lab_of_known_colours():
    lab = rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.float32))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red, D65


def test_round_trip_is_lossless():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=0.05)


def test_transfer_reaches_the_target_statistics():
    rng = np.random.default_rng(1)
    rgb = np.clip(rng.normal([200, 150, 170], 15, (80, 80, 3)), 0, 255).astype(np.float32)
    target = StainStats(mean=(60.0, 25.0, -20.0), std=(8.0, 5.0, 6.0))
    result = stain_stats(transfer_stain(rgb, target))
    np.testing.assert_allclose(result.mean, target.mean, atol=0.5)
    np.testing.assert_allclose(result.std, target.std, rtol=0.05)


def test_transfer_measured_on_a_mask_only():
    rgb = np.full((20, 20, 3), 230.0, np.float32)
    rgb[5:15, 5:15] = [120, 60, 170]
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    target = StainStats(mean=(40.0, 30.0, -40.0), std=(1.0, 1.0, 1.0))
    result = transfer_stain(rgb, target, mask=mask)
    np.testing.assert_allclose(stain_stats(result, mask).mean, target.mean, atol=0.6)


def test_stats_round_trip_and_average():
    a = StainStats((1.0, 2.0, 3.0), (1.0, 1.0, 1.0))
    b = StainStats((3.0, 4.0, 5.0), (3.0, 3.0, 3.0))
    assert StainStats.from_dict(a.to_dict()) == a
    assert average_stats([a, b]) == StainStats((2.0, 3.0, 4.0), (2.0, 2.0, 2.0))


def _two_part_cell(rng):
    """A textured dark nucleus inside a textured pale cytoplasm, and their masks."""
    rgb = np.full((60, 60, 3), 235.0, np.float32)
    yy, xx = np.mgrid[:60, :60]
    cell = (yy - 30) ** 2 + (xx - 30) ** 2 <= 24 ** 2
    nucleus = (yy - 30) ** 2 + (xx - 30) ** 2 <= 12 ** 2
    rgb[cell] = np.clip(rng.normal([200, 170, 200], 8, (cell.sum(), 3)), 0, 255)
    rgb[nucleus] = np.clip(rng.normal([90, 40, 140], 8, (nucleus.sum(), 3)), 0, 255)
    return rgb, nucleus, cell & ~nucleus


def test_whole_cell_transfer_keeps_the_nucleus_against_cytoplasm_relation_parts_transfer_moves_it():
    rgb, nucleus, cytoplasm = _two_part_cell(np.random.default_rng(2))
    nucleus_target = StainStats(mean=(35.0, 40.0, -40.0), std=(2.0, 2.0, 2.0))
    cytoplasm_target = StainStats(mean=(75.0, 12.0, -2.0), std=(8.0, 8.0, 8.0))
    whole_target = StainStats(mean=(50.0, 25.0, -20.0), std=(15.0, 12.0, 15.0))
    before = part_relation(rgb, nucleus, cytoplasm)
    whole = transfer_stain(rgb, whole_target, mask=nucleus | cytoplasm)
    np.testing.assert_allclose(part_relation(whole, nucleus, cytoplasm), before, atol=0.05)
    parts = transfer_stain_parts(rgb, nucleus, cytoplasm, nucleus_target, cytoplasm_target)
    # Each part lands on its own target (the edge mixes a pixel or so of each, so look inside).
    distance = np.hypot(*(np.mgrid[:60, :60] - 30))
    inner_nucleus, outer_cytoplasm = nucleus & (distance <= 9), cytoplasm & (distance >= 15)
    np.testing.assert_allclose(stain_stats(parts, inner_nucleus).mean, nucleus_target.mean, atol=1.0)
    np.testing.assert_allclose(stain_stats(parts, outer_cytoplasm).mean, cytoplasm_target.mean, atol=1.0)
    assert np.abs(part_relation(parts, nucleus, cytoplasm) - before).max() > 0.2
    assert parts.shape == rgb.shape and parts.dtype == np.float32


def test_parts_transfer_needs_both_parts():
    rgb, nucleus, cytoplasm = _two_part_cell(np.random.default_rng(3))
    target = StainStats(mean=(50.0, 20.0, -20.0), std=(5.0, 5.0, 5.0))
    with pytest.raises(ValueError, match="both a nucleus and a cytoplasm"):
        transfer_stain_parts(rgb, np.zeros_like(nucleus), cytoplasm, target, target)


def test_part_relation_is_zero_without_a_part():
    rgb, nucleus, cytoplasm = _two_part_cell(np.random.default_rng(4))
    assert part_relation(rgb, nucleus, cytoplasm).shape == (9,)
    assert not part_relation(rgb, nucleus, np.zeros_like(cytoplasm)).any()
