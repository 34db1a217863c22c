"""A lab's JPEG compression: read from its photos' headers, and put on another image.

The two training labs saved their photos differently: Barcelona at about
JPEG quality 75 with colour at full resolution (4:4:4), Munich at about
quality 95 with colour at half resolution (4:2:0). Quality 75 leaves 8x8
block artefacts in every Barcelona cell, and the cell view keeps them at
almost their own scale, so they could say "Barcelona" as plainly as the
stain does. A counterfactual twin re-rendered on the photo's pixel grid
carries none of the other lab's artefacts unless it is compressed as that
lab's photos were: `compress_like` saves it with the same quantisation
tables and colour subsampling and decodes it again. benchmarks/compression.py
measures whether the models read them (measured: they do not), and the
Dataset page lists each class's compression.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

# PIL's names for JPEG colour subsampling.
SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
# The JPEG standard's example luminance table (Annex K), row by row: libjpeg,
# and most cameras and scanners after it, scale it by the quality setting.
STANDARD_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
                      14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
                      18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                      49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


def standard_table(quality: int) -> tuple[int, ...]:
    """libjpeg's luminance table for `quality` (1-100)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(min(255, max(1, (value * scale + 50) // 100)) for value in STANDARD_LUMINANCE)


@lru_cache(maxsize=64)  # a dataset holds a few distinct tables, read for thousands of files
def nearest_quality(luminance: tuple[int, ...]) -> int:
    """The libjpeg quality whose luminance table is nearest `luminance` (1-100)."""
    table = np.asarray(luminance, np.int32)
    return min(range(1, 101), key=lambda quality: int(np.abs(table - standard_table(quality)).sum()))


@dataclass(frozen=True)
class JpegSettings:
    """How a JPEG was compressed: its quantisation tables and colour subsampling."""

    qtables: tuple[tuple[int, ...], ...]  # each 64 entries, in the file's order
    subsampling: int  # PIL's: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0

    @property
    def quality(self) -> int:
        """The libjpeg quality whose luminance table is nearest this one's (1-100)."""
        return nearest_quality(self.qtables[0])

    @property
    def standard(self) -> bool:
        """Whether the luminance table is exactly libjpeg's at `quality`."""
        return tuple(self.qtables[0]) == standard_table(self.quality)

    def describe(self) -> str:
        return (f"JPEG quality {'' if self.standard else 'about '}{self.quality}, "
                f"colour {SUBSAMPLING_NAMES.get(self.subsampling, self.subsampling)}")


def jpeg_settings(path: str | Path) -> JpegSettings | None:
    """The compression of the JPEG at `path`; None for any other file or an unreadable one."""
    try:
        with Image.open(path) as image:
            return settings_of(image)
    except (OSError, ValueError, SyntaxError):
        return None


def settings_of(image: Image.Image) -> JpegSettings | None:
    """The compression of an opened JPEG file; None for any other format."""
    if image.format != "JPEG" or not getattr(image, "quantization", None):
        return None
    tables = tuple(tuple(int(v) for v in image.quantization[key]) for key in sorted(image.quantization))
    return JpegSettings(tables, int(JpegImagePlugin.get_sampling(image)))


def common_jpeg_settings(paths: Iterable[str | Path]) -> JpegSettings | None:
    """The compression most of the JPEGs among `paths` share; None if none is a JPEG."""
    counts = Counter(settings for settings in map(jpeg_settings, paths) if settings is not None)
    return counts.most_common(1)[0][0] if counts else None


def compress_like(image: Image.Image, settings: JpegSettings) -> Image.Image:
    """`image` saved as a JPEG with `settings` and decoded again (RGB)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", qtables=[list(table) for table in settings.qtables],
                              subsampling=settings.subsampling)
    buffer.seek(0)
    with Image.open(buffer) as compressed:
        return compressed.convert("RGB")
