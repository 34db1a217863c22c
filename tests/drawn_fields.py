"""Drawn microscope fields with a known cell outline, in each lab's look.

The cell mask, the counterfactual images and the cell view are tested on
these: the true mask is known exactly, and no dataset image is needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Two labs' looks: peach field with pink red cells, blue-white field with mauve ones.
LOOKS = {
    "peach": {"background": (245, 222, 196), "red_cell": (222, 170, 180),
              "cytoplasm": (205, 175, 205), "nucleus": (88, 40, 140)},
    "blue-white": {"background": (228, 230, 242), "red_cell": (205, 172, 205),
                   "cytoplasm": (215, 185, 225), "nucleus": (130, 60, 172)},
}


def photographed_smaller(image: Image.Image, zoom: float, look: str) -> Image.Image:
    """`image` as a lower magnification would show it: shrunk about its centre on the look's background."""
    small = image.resize((round(image.width * zoom), round(image.height * zoom)), Image.Resampling.LANCZOS)
    field = Image.new("RGB", image.size, LOOKS[look]["background"])
    field.paste(small, ((image.width - small.width) // 2, (image.height - small.height) // 2))
    return field


def draw_field(look: str, size: int = 360, seed: int = 0, lobes: int = 1):
    """A white cell among red cells; returns the image and the true cell mask."""
    colours = LOOKS[look]
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), colours["background"])
    draw = ImageDraw.Draw(image)
    centre = np.array([size / 2, size / 2]) + rng.uniform(-20, 20, 2)
    radius = size * rng.uniform(0.18, 0.24)
    # Red cells around the white cell, some touching it.
    for angle in np.linspace(0, 2 * np.pi, 7, endpoint=False) + rng.uniform(0, 1):
        distance = radius + size * 0.11
        x, y = centre + distance * np.array([np.cos(angle), np.sin(angle)])
        r = size * 0.09
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colours["red_cell"])
    draw.ellipse([*(centre - radius), *(centre + radius)], fill=colours["cytoplasm"])
    for lobe in range(lobes):
        offset = (lobe - (lobes - 1) / 2) * radius * 0.45
        r = radius * (0.55 if lobes == 1 else 0.28)
        x, y = centre[0] + offset, centre[1]
        draw.ellipse([x - r, y - r * 0.9, x + r, y + r * 0.9], fill=colours["nucleus"])
    yy, xx = np.mgrid[:size, :size]
    truth = (xx + 0.5 - centre[0]) ** 2 + (yy + 0.5 - centre[1]) ** 2 <= radius ** 2
    return image, truth
