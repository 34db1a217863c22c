"""Stain colour in CIELAB: conversion, statistics and Reinhard colour transfer.

Two labs stain and photograph differently, so the same cell type looks
peach in one and blue-white in the other. Reinhard et al. (2001) move an
image's per-channel mean and spread in a perceptual colour space onto a
target's: used here both to *normalise* every cell to one reference stain
(the cell-view model's preprocessing) and to *re-stain* a test image as the
other lab would have (the audit's counterfactual test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# sRGB (D65) to XYZ, and the D65 white point.
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375],
     [0.2126729, 0.7151522, 0.0721750],
     [0.0193339, 0.1191920, 0.9503041]], dtype=np.float32
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ).astype(np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_EPSILON = 216 / 24389
_KAPPA = 24389 / 27


def _linearise(c: np.ndarray) -> np.ndarray:
    """sRGB 0..1 to linear light."""
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


# 8-bit input: the same values from a 256-entry table, several times faster.
_LINEAR_TABLE = _linearise(np.arange(256, dtype=np.float32) / np.float32(255.0))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit (or 0..255 float) sRGB to CIELAB (L 0..100, a and b about -128..127)."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        linear = _LINEAR_TABLE[rgb]
    else:
        linear = _linearise(rgb.astype(np.float32) / np.float32(255.0))
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1
    )


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB to sRGB float 0..255 (clipped)."""
    lab = np.asarray(lab, dtype=np.float32)
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f ** 3 > _EPSILON, f ** 3, (116 * f - 16) / _KAPPA) * _WHITE
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0, 1)
    c = np.where(linear > 0.0031308, 1.055 * np.power(linear, 1 / 2.4) - 0.055, 12.92 * linear)
    return np.clip(c * 255.0, 0, 255)


@dataclass(frozen=True)
class StainStats:
    """Per-channel mean and standard deviation in LAB."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "StainStats":
        return cls(tuple(map(float, data["mean"])), tuple(map(float, data["std"])))


def stain_stats(rgb: np.ndarray, mask: np.ndarray | None = None) -> StainStats:
    """LAB mean and spread of an image's pixels (only those in `mask`, if given)."""
    return _lab_stats(rgb_to_lab(rgb), mask)


def _lab_stats(lab: np.ndarray, mask: np.ndarray | None = None) -> StainStats:
    lab = lab.reshape(-1, 3)
    if mask is not None and np.any(mask):
        lab = lab[np.asarray(mask).reshape(-1)]
    return StainStats(tuple(map(float, lab.mean(axis=0))), tuple(map(float, lab.std(axis=0) + 1e-3)))


def average_stats(stats: list[StainStats]) -> StainStats:
    """The mean of many images' statistics: a lab's typical stain."""
    means = np.mean([s.mean for s in stats], axis=0)
    stds = np.mean([s.std for s in stats], axis=0)
    return StainStats(tuple(map(float, means)), tuple(map(float, stds)))


def transfer_stain(rgb: np.ndarray, target: StainStats, source: StainStats | None = None,
                   mask: np.ndarray | None = None) -> np.ndarray:
    """Reinhard transfer: give `rgb` the LAB mean and spread of `target`.

    `source` is the image's own statistics (measured over `mask` when not
    given); every pixel is moved by the same affine map, so what is lighter
    stays lighter. Returns float32 RGB 0..255.
    """
    lab = rgb_to_lab(rgb)
    source = source or _lab_stats(lab, mask)
    scale = np.asarray(target.std, np.float32) / np.asarray(source.std, np.float32)
    lab = (lab - np.asarray(source.mean, np.float32)) * scale + np.asarray(target.mean, np.float32)
    return lab_to_rgb(lab).astype(np.float32)


# The nucleus' weight falls from 1 to 0 over about this many pixels at its
# edge, so the two transfers meet without a seam of their own.
PART_EDGE_SIGMA = 1.0


def transfer_stain_parts(rgb: np.ndarray, nucleus: np.ndarray, cytoplasm: np.ndarray,
                         nucleus_target: StainStats, cytoplasm_target: StainStats) -> np.ndarray:
    """Reinhard transfer of the nucleus and of the cytoplasm, each to its own target.

    One transfer for the whole cell is a per-channel affine map, so it keeps
    how the nucleus is coloured against the cytoplasm, measured in the
    cell's own spread, exactly as it was; a lab's stain does not (the lab
    notebook's "What a twin cannot change"). Here the nucleus takes the
    target's nucleus statistics and the cytoplasm its cytoplasm statistics,
    each from the image's own; pixels near the nucleus' edge mix the two.
    Both masks must hold pixels. Returns float32 RGB 0..255.
    """
    nucleus, cytoplasm = np.asarray(nucleus, bool), np.asarray(cytoplasm, bool)
    if not nucleus.any() or not cytoplasm.any():
        raise ValueError("a transfer by parts needs both a nucleus and a cytoplasm")
    lab = rgb_to_lab(rgb)
    moved = []
    for part, target in ((nucleus, nucleus_target), (cytoplasm, cytoplasm_target)):
        source = _lab_stats(lab, part)
        scale = np.asarray(target.std, np.float32) / np.asarray(source.std, np.float32)
        moved.append((lab - np.asarray(source.mean, np.float32)) * scale + np.asarray(target.mean, np.float32))
    weight = np.clip(ndimage.gaussian_filter(nucleus.astype(np.float32), PART_EDGE_SIGMA), 0.0, 1.0)[..., None]
    return lab_to_rgb(weight * moved[0] + (1 - weight) * moved[1]).astype(np.float32)


def part_relation(rgb: np.ndarray, nucleus: np.ndarray, cytoplasm: np.ndarray) -> np.ndarray:
    """Nine numbers on how the nucleus is coloured against the cytoplasm, which no Reinhard transfer changes.

    Per LAB channel: the nucleus' mean minus the cytoplasm's, the nucleus'
    spread and the cytoplasm's spread, each over the whole cell's spread. A
    whole-cell transfer moves every pixel by one affine map per channel, so
    these stay as they were (up to colours clipped at the edge of sRGB):
    what they tell, a re-staining cannot hide. Zeros where a part is empty.
    """
    nucleus, cytoplasm = np.asarray(nucleus, bool), np.asarray(cytoplasm, bool)
    if not nucleus.any() or not cytoplasm.any():
        return np.zeros(9, np.float32)
    lab = rgb_to_lab(np.asarray(rgb, np.float32)[..., :3])
    spread = lab[nucleus | cytoplasm].std(axis=0) + 1e-6
    inside, around = lab[nucleus], lab[cytoplasm]
    return np.concatenate([(inside.mean(axis=0) - around.mean(axis=0)) / spread,
                           inside.std(axis=0) / spread, around.std(axis=0) / spread]).astype(np.float32)
