"""Fetch the public Kaggle dataset into the project's data folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from bloodcell.config import CLASS_NAMES, DEFAULT_DATA_DIR
from bloodcell.errors import BloodcellError

KAGGLE_DATASET = "sumithsingh/blood-cell-images-for-cancer-detection"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"


def find_class_root(folder: Path) -> Path | None:
    """The first folder at or below `folder` that holds all five class folders."""
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if all((candidate / name).is_dir() for name in CLASS_NAMES):
            return candidate
    return None


def download_dataset(target: Path | None = None) -> Path:
    """Download with kagglehub and copy the class folders into `target`."""
    target = Path(target or DEFAULT_DATA_DIR)
    if find_class_root(target) == target:
        return target
    manual = (f"download it by hand from {KAGGLE_URL} and unpack it so that "
              f"{target}/<class>/*.jpg exists, or set BLOODCELL_DATA to its folder")
    try:
        import kagglehub

        downloaded = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except ImportError:
        raise BloodcellError(f"kagglehub is not installed; {manual}") from None
    except Exception as exc:  # offline, no credentials, Kaggle down
        raise BloodcellError(f"could not download from Kaggle ({type(exc).__name__}); {manual}") from None
    source = find_class_root(downloaded)
    if source is None:
        raise BloodcellError(f"the download in {downloaded} has no class folders; {manual}")
    target.mkdir(parents=True, exist_ok=True)
    for name in CLASS_NAMES:
        shutil.copytree(source / name, target / name, dirs_exist_ok=True)
    return target
