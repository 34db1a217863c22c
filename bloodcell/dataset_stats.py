"""Summaries of a dataset folder for the app: counts, image sizes, colours, pages of files."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bloodcell.compression import settings_of
from bloodcell.config import CLASS_NAMES
from bloodcell.data import list_images
from bloodcell.errors import ImageReadError
from bloodcell.imaging import read_image


@dataclass
class DatasetOverview:
    root: Path
    files: dict[str, list[Path]]  # class -> image files (present classes only)

    @property
    def counts(self) -> dict[str, int]:
        return {label: len(paths) for label, paths in self.files.items()}

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def overview(root: Path) -> DatasetOverview | None:
    """The image files per class folder, or None if `root` holds no class folder."""
    root = Path(root)
    if not root.is_dir():
        return None
    files = {label: list_images(root / label) for label in CLASS_NAMES if (root / label).is_dir()}
    files = {label: paths for label, paths in files.items() if paths}
    return DatasetOverview(root, files) if files else None


def file_kinds(paths: list[Path]) -> Counter:
    """(size "WxH", how the file was saved) -> count, read from the file headers only.

    How it was saved: a JPEG's quality and colour subsampling
    (bloodcell.compression), otherwise its format.
    """
    kinds: Counter = Counter()
    for path in paths:
        try:
            with Image.open(path) as image:
                settings = settings_of(image)
                saved_as = settings.describe() if settings else (image.format or "unknown format")
                kinds[(f"{image.width}x{image.height}", saved_as)] += 1
        except (OSError, ValueError, SyntaxError):
            kinds[("unreadable", "unreadable")] += 1
    return kinds


def mean_colour(paths: list[Path], sample: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB of a sample of images (each shrunk to 64 px), and its per-image spread."""
    chosen = random.Random(seed).sample(paths, min(sample, len(paths)))
    means = []
    for path in chosen:
        try:
            image = read_image(path)
        except ImageReadError:
            continue
        image.thumbnail((64, 64))
        means.append(np.asarray(image, np.float32).reshape(-1, 3).mean(axis=0))
    if not means:
        return np.zeros(3), np.zeros(3)
    stacked = np.stack(means)
    return stacked.mean(axis=0), stacked.std(axis=0)


def gallery_page(paths: list[Path], page: int, per_page: int, shuffle_seed: int | None) -> list[Path]:
    """One page of files, in name order or shuffled by a seed."""
    ordered = list(paths)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(ordered)
    start = max(0, page) * per_page
    return ordered[start:start + per_page]


def thumbnail(path: Path, side: int = 160) -> Image.Image | None:
    try:
        image = read_image(path)
    except ImageReadError:
        return None
    image.thumbnail((side, side))
    return image
