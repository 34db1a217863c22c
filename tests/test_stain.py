"""LAB conversion and Reinhard stain transfer."""

from __future__ import annotations

import numpy as np

from bloodcell.stain import StainStats, average_stats, lab_to_rgb, rgb_to_lab, stain_stats, transfer_stain


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
