"""The dataset download finds the class folders inside whatever Kaggle unpacks."""

from __future__ import annotations

import pytest

from bloodcell.download import download_dataset, find_class_root
from bloodcell.errors import BloodcellError
from conftest import make_drawn_dataset


def test_copies_nested_class_folders(tmp_path, monkeypatch):
    import kagglehub

    unpacked = tmp_path / "cache" / "versions" / "1"
    make_drawn_dataset(unpacked / "Blood cell Cancer" / "inner", per_class=2)
    monkeypatch.setattr(kagglehub, "dataset_download", lambda slug: str(unpacked))
    target = download_dataset(tmp_path / "data" / "blood-cells")
    assert find_class_root(target) == target
    assert len(list((target / "monocyte").iterdir())) == 2


def test_download_without_class_folders_is_a_clear_error(tmp_path, monkeypatch):
    import kagglehub

    (tmp_path / "junk").mkdir()
    monkeypatch.setattr(kagglehub, "dataset_download", lambda slug: str(tmp_path / "junk"))
    with pytest.raises(BloodcellError, match="no class folders"):
        download_dataset(tmp_path / "out")
