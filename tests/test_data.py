"""Dataset checks, scanning, duplicate grouping and the split manifest."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter

import pytest

from bloodcell.config import CLASS_NAMES
from bloodcell.data import (
    Sample,
    build_manifest,
    check_data_dir,
    load_manifest,
    load_or_create_manifest,
    make_split,
    scan_dataset,
)
from bloodcell.errors import BloodcellError
from conftest import SHIPPED_MODELS, make_drawn_dataset


def test_missing_unknown_and_empty_class_folders(tmp_path):
    root = make_drawn_dataset(tmp_path / "d", per_class=2)
    with pytest.raises(BloodcellError, match="not found"):
        check_data_dir(tmp_path / "nowhere", require_all_classes=True)
    (root / "lymphocyte").mkdir()
    with pytest.raises(BloodcellError, match="unknown class folder.*lymphocyte"):
        check_data_dir(root, require_all_classes=True)
    (root / "lymphocyte").rmdir()
    shutil.rmtree(root / "monocyte")
    with pytest.raises(BloodcellError, match="missing class folder.*monocyte"):
        check_data_dir(root, require_all_classes=True)
    (root / "monocyte").mkdir()
    with pytest.raises(BloodcellError, match="no readable images"):
        scan_dataset(root, require_all_classes=True)
    # Evaluation accepts a subset of the classes.
    assert check_data_dir(root, require_all_classes=False) == list(CLASS_NAMES)


def test_scan_skips_and_names_bad_files(tmp_path, caplog):
    root = make_drawn_dataset(tmp_path / "d", per_class=2)
    (root / "myeloblast" / "notes.png").write_text("not an image")
    (root / "myeloblast" / "broken.jpg").write_bytes((root / "myeloblast" / "myeloblast_0.JPG").read_bytes()[:200])
    (root / "myeloblast" / "readme.txt").write_text("ignored: not an image suffix")
    samples = scan_dataset(root)
    paths = {s.path for s in samples}
    assert "myeloblast/notes.png" not in paths and "myeloblast/broken.jpg" not in paths
    assert "myeloblast/myeloblast_0.JPG" in paths  # upper-case suffix accepted
    assert "notes.png" in caplog.text and "broken.jpg" in caplog.text


def fake_samples(n_per_class: int = 40) -> list[Sample]:
    samples = []
    for label in CLASS_NAMES:
        for i in range(n_per_class):
            samples.append(Sample(f"{label}/{i}.jpg", label, f"{label}-{i}", f"px-{label}-{i}"))
    # Two duplicate pairs: one byte-identical, one pixel-identical re-encoding.
    samples.append(Sample("basophil/dup_a.jpg", "basophil", "basophil-3", "px-other"))
    samples.append(Sample("monocyte/dup_b.png", "monocyte", "other-bytes", "px-monocyte-7"))
    return samples


def test_split_is_deterministic_stratified_and_order_free():
    samples = fake_samples()
    first = make_split(samples)
    shuffled = samples[:]
    random.Random(5).shuffle(shuffled)
    assert make_split(shuffled) == first
    for label in CLASS_NAMES:
        counts = Counter(split for path, split in first.items() if path.startswith(label + "/"))
        total = sum(counts.values())
        assert abs(counts["train"] - 0.70 * total) <= 2
        assert abs(counts["val"] - 0.15 * total) <= 2
        assert abs(counts["test"] - 0.15 * total) <= 2


def test_duplicates_stay_in_one_split():
    split = make_split(fake_samples())
    assert split["basophil/dup_a.jpg"] == split["basophil/3.jpg"]
    assert split["monocyte/dup_b.png"] == split["monocyte/7.jpg"]


def test_manifest_is_written_once_and_reused(tmp_path):
    root = make_drawn_dataset(tmp_path / "d", per_class=10)
    models = tmp_path / "models"
    first = load_or_create_manifest(root, models)
    written = (models / "split.json").read_text()
    second = load_or_create_manifest(root, models)
    assert second.files == first.files and (models / "split.json").read_text() == written
    # A changed file is refused rather than silently re-split.
    (root / "monocyte" / "monocyte_1.png").write_bytes((root / "monocyte" / "monocyte_3.png").read_bytes())
    with pytest.raises(BloodcellError, match="changed"):
        load_or_create_manifest(root, models)


def assert_no_leakage(manifest) -> None:
    where: dict[str, str] = {}
    for entry in manifest.files:
        assert where.setdefault(entry["sha256"], entry["split"]) == entry["split"], entry["path"]
    paths = [entry["path"] for entry in manifest.files]
    assert len(paths) == len(set(paths))


def test_drawn_dataset_manifest_has_no_leakage(drawn_dataset):
    manifest = build_manifest(scan_dataset(drawn_dataset))
    assert_no_leakage(manifest)


def test_shipped_manifest_matches_data_and_has_no_leakage(real_data):
    path = SHIPPED_MODELS / "split.json"
    manifest = load_manifest(path)
    assert manifest.sizes() == {"train": 3150, "val": 675, "test": 675}
    assert_no_leakage(manifest)
    # Rebuilding from the data gives the same split (determinism on real data).
    rebuilt = build_manifest(scan_dataset(real_data))
    assert rebuilt.content_hash() == manifest.content_hash()
    assert json.loads(path.read_text())["content_hash"] == manifest.content_hash()
