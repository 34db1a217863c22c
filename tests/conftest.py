"""Shared fixtures: the real dataset (when present), drawn images, a tiny model.

Tests that need ../shared skip with a reason when it is absent, and fail
instead when CI=true, so CI can never pass by skipping them.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bloodcell.config import CLASS_NAMES, PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"
REAL_DATA = Path(os.environ.get("BLOODCELL_DATA") or SHARED / "data" / "blood-cells")
CROSS_SOURCE = SHARED / "data" / "cross-source-dev"
IMAGENET_WEIGHTS = Path(
    os.environ.get("BLOODCELL_IMAGENET_WEIGHTS") or SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
)
SHIPPED_MODELS = PROJECT_ROOT / "models"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Background and cell colours per class for drawn images: distinct enough
# that a one-epoch model can learn something, simple enough to draw fast.
DRAWN_COLOURS = {
    "basophil": ((235, 200, 180), (60, 30, 110)),
    "erythroblast": ((235, 200, 180), (110, 20, 60)),
    "monocyte": ((235, 200, 180), (140, 110, 170)),
    "myeloblast": ((210, 220, 240), (120, 60, 160)),
    "seg_neutrophil": ((210, 220, 240), (90, 50, 130)),
}


def require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path}"
    if IN_CI:
        pytest.fail(f"{message}; CI must run every test")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_data() -> Path:
    return require(REAL_DATA, "dataset")


@pytest.fixture(scope="session")
def cross_source_data() -> Path:
    return require(CROSS_SOURCE, "cross-source dataset")


@pytest.fixture(scope="session")
def imagenet_weights() -> Path:
    return require(IMAGENET_WEIGHTS, "ImageNet weights")


@pytest.fixture(scope="session")
def shipped_models() -> Path:
    from bloodcell.config import MODEL_NAMES, PAIRED_MODELS, RECIPE_MODELS, ROUTED_MODELS

    for name in (*MODEL_NAMES, *RECIPE_MODELS):
        require(SHIPPED_MODELS / name / "model.keras", f"shipped model {name}")
    for name in PAIRED_MODELS:
        require(SHIPPED_MODELS / name / "card.json", f"shipped pair {name}")
    for name in ROUTED_MODELS:
        require(SHIPPED_MODELS / name / "card.json", f"shipped cascade {name}")
    return SHIPPED_MODELS


def draw_cell(label: str, size: int = 48, seed: int = 0) -> Image.Image:
    """A round 'cell' with a darker 'nucleus' on a plain background."""
    rng = np.random.default_rng(seed)
    background, nucleus = DRAWN_COLOURS[label]
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    centre = size / 2 + rng.uniform(-3, 3, size=2)
    radius = size * rng.uniform(0.25, 0.35)
    draw.ellipse([*(centre - radius), *(centre + radius)], fill=(220, 180, 200))
    inner = radius * 0.6
    draw.ellipse([*(centre - inner), *(centre + inner)], fill=nucleus)
    noise = rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_drawn_dataset(root: Path, per_class: int = 8) -> Path:
    """Five class folders of drawn cells, plus one byte-identical duplicate."""
    for index, label in enumerate(CLASS_NAMES):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            suffix = ".png" if n % 2 else ".JPG"  # mixed formats and letter case
            image = draw_cell(label, seed=index * 100 + n)
            fmt = "PNG" if suffix == ".png" else "JPEG"
            (folder / f"{label}_{n}{suffix}").write_bytes(encode(image, fmt))
    shutil.copy(root / "basophil" / "basophil_1.png", root / "basophil" / "basophil_copy.png")
    return root


@pytest.fixture(scope="session")
def drawn_dataset(tmp_path_factory) -> Path:
    return make_drawn_dataset(tmp_path_factory.mktemp("drawn") / "blood-cells")


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory, drawn_dataset) -> Path:
    """A cnn trained for one epoch on drawn cells at 32 pixels."""
    from bloodcell.training import train

    models_dir = tmp_path_factory.mktemp("models")
    train("cnn", drawn_dataset, models_dir, epochs=1, image_size=32, batch_size=8, verbose=0)
    return models_dir
