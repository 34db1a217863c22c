"""Find, scan and split the dataset.

Layout: `<root>/<class>/<image>`. The scan decodes every file once, so that
corrupt files are reported by name and skipped, and so that byte- and
pixel-identical duplicates can be grouped: a group always lands in one split,
otherwise the test split would contain copies of training images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bloodcell.config import (
    CLASS_NAMES,
    IMAGE_SUFFIXES,
    SPLIT_FRACTIONS,
    SPLIT_MANIFEST_NAME,
    SPLIT_SEED,
)
from bloodcell.errors import BloodcellError, ImageReadError
from bloodcell.imaging import read_image

log = logging.getLogger("bloodcell")

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One readable image of the dataset."""

    path: str  # relative to the dataset root, with forward slashes
    label: str
    sha256: str  # of the file's bytes
    pixel_hash: str  # of the decoded pixels, to catch re-encoded duplicates


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_data_dir(root: Path, require_all_classes: bool) -> list[str]:
    """Return the class folders present under `root`, or raise a one-line error."""
    if not root.is_dir():
        raise BloodcellError(
            f"dataset folder not found: {root} (use --data DIR or BLOODCELL_DATA, "
            "or run 'python -m bloodcell download')"
        )
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [name for name in folders if name not in CLASS_NAMES]
    present = [name for name in CLASS_NAMES if name in folders]
    if require_all_classes:
        if unknown:
            raise BloodcellError(
                f"unknown class folder(s) in {root}: {', '.join(unknown)} "
                f"(expected exactly: {', '.join(CLASS_NAMES)})"
            )
        missing = [name for name in CLASS_NAMES if name not in folders]
        if missing:
            raise BloodcellError(f"missing class folder(s) in {root}: {', '.join(missing)}")
    else:
        for name in unknown:
            log.warning("ignoring folder %s: not one of the classes %s", name, ", ".join(CLASS_NAMES))
        if not present:
            raise BloodcellError(
                f"no class folders in {root} (expected some of: {', '.join(CLASS_NAMES)})"
            )
    return present


def list_images(folder: Path) -> list[Path]:
    """Image files directly or deeper inside `folder`, sorted, any suffix case."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def scan_dataset(root: Path, require_all_classes: bool = True) -> list[Sample]:
    """Decode every image under `root`; skip (and name) unreadable files."""
    root = Path(root)
    samples: list[Sample] = []
    for label in check_data_dir(root, require_all_classes):
        kept = 0
        for path in list_images(root / label):
            relative = path.relative_to(root).as_posix()
            try:
                image = read_image(path)
            except ImageReadError as exc:
                log.warning("skipping %s: %s", relative, exc)
                continue
            pixel_hash = hashlib.sha256(
                f"{image.size}".encode() + image.tobytes()
            ).hexdigest()
            samples.append(Sample(relative, label, sha256_file(path), pixel_hash))
            kept += 1
        if kept == 0 and require_all_classes:
            raise BloodcellError(f"class folder {root / label} holds no readable images")
    if not samples:
        raise BloodcellError(f"no readable images found in {root}")
    return samples


def duplicate_groups(samples: list[Sample]) -> list[list[Sample]]:
    """Groups of samples whose bytes or pixels are identical (union of both)."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in ("sha256", "pixel_hash"):
        first_seen: dict[str, int] = {}
        for index, sample in enumerate(samples):
            value = getattr(sample, key)
            if value in first_seen:
                parent[find(index)] = find(first_seen[value])
            else:
                first_seen[value] = index
    groups: dict[int, list[Sample]] = defaultdict(list)
    for index, sample in enumerate(samples):
        groups[find(index)].append(sample)
    return list(groups.values())


def make_split(
    samples: list[Sample], seed: int = SPLIT_SEED, fractions: dict[str, float] = SPLIT_FRACTIONS
) -> dict[str, str]:
    """Stratified, deterministic split of `samples`: relative path -> split name.

    Duplicate groups are assigned whole. Within a class, groups are sorted by
    content hash and shuffled with a fixed seed, so the result depends only
    on the files' contents and labels, not on the order the filesystem lists them.
    """
    groups_by_label: dict[str, list[list[Sample]]] = defaultdict(list)
    for group in duplicate_groups(samples):
        group.sort(key=lambda s: s.path)
        groups_by_label[group[0].label].append(group)
        labels = {s.label for s in group}
        if len(labels) > 1:
            log.warning(
                "identical images carry different labels (%s): %s",
                ", ".join(sorted(labels)), ", ".join(s.path for s in group),
            )
    assignment: dict[str, str] = {}
    for label in sorted(groups_by_label):
        groups = sorted(groups_by_label[label], key=lambda g: g[0].pixel_hash)
        random.Random(f"{seed}:{label}").shuffle(groups)
        total = sum(len(g) for g in groups)
        train_cut = round(total * fractions["train"])
        val_cut = train_cut + round(total * fractions["val"])
        seen = 0
        for group in groups:
            split = "train" if seen < train_cut else "val" if seen < val_cut else "test"
            for sample in group:
                assignment[sample.path] = split
            seen += len(group)
    return assignment


@dataclass
class SplitManifest:
    """Which file belongs to which split, with the content hash of every file."""

    seed: int
    fractions: dict[str, float]
    files: list[dict]  # {"path", "label", "sha256", "split", "duplicate_of"?}

    def paths(self, split: str) -> list[tuple[str, str]]:
        """(relative path, label) pairs of one split, in manifest order."""
        return [(f["path"], f["label"]) for f in self.files if f["split"] == split]

    def sizes(self) -> dict[str, int]:
        return {name: sum(f["split"] == name for f in self.files) for name in SPLITS}

    def content_hash(self) -> str:
        """sha256 of the canonical listing: identifies this exact split."""
        canonical = json.dumps(
            sorted((f["path"], f["label"], f["sha256"], f["split"]) for f in self.files)
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "fractions": self.fractions,
            "classes": list(CLASS_NAMES),
            "sizes": self.sizes(),
            "content_hash": self.content_hash(),
            "files": self.files,
        }


def build_manifest(samples: list[Sample], seed: int = SPLIT_SEED) -> SplitManifest:
    assignment = make_split(samples, seed)
    files = [
        {"path": s.path, "label": s.label, "sha256": s.sha256, "split": assignment[s.path]}
        for s in sorted(samples, key=lambda s: s.path)
    ]
    for group in duplicate_groups(samples):
        if len(group) > 1:
            log.warning("duplicate images kept in one split: %s", ", ".join(sorted(s.path for s in group)))
    return SplitManifest(seed, dict(SPLIT_FRACTIONS), files)


def manifest_path(models_dir: Path) -> Path:
    return Path(models_dir) / SPLIT_MANIFEST_NAME


def load_manifest(path: Path) -> SplitManifest:
    try:
        raw = json.loads(Path(path).read_text())
        return SplitManifest(raw["seed"], raw["fractions"], raw["files"])
    except FileNotFoundError:
        raise BloodcellError(f"split manifest not found: {path}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BloodcellError(f"split manifest {path} is damaged ({exc})") from None


def save_manifest(manifest: SplitManifest, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest.to_json(), indent=1) + "\n")


def check_manifest_files(manifest: SplitManifest, path: Path, data_dir: Path, split: str | None = None,
                         hint: str = "point --data at the dataset it was made for") -> None:
    """Every file of the manifest (or of one split) is in `data_dir`, unchanged since `path` was written."""
    files = [f for f in manifest.files if split is None or f["split"] == split]
    missing = [f["path"] for f in files if not (Path(data_dir) / f["path"]).is_file()]
    if missing:
        raise BloodcellError(f"{len(missing)} file(s) of the split manifest {path} are not in {data_dir} "
                             f"(first: {missing[0]}); {hint}")
    changed = [f["path"] for f in files if sha256_file(Path(data_dir) / f["path"]) != f["sha256"]]
    if changed:
        raise BloodcellError(f"{len(changed)} file(s) changed since the split manifest {path} was written "
                             f"(first: {changed[0]})")


def load_or_create_manifest(data_dir: Path, models_dir: Path) -> SplitManifest:
    """Reuse the manifest in `models_dir`; write it from a scan if there is none.

    A manifest that names files the dataset lacks, or whose contents differ,
    is an error: silently re-splitting would leak test images into training.
    """
    path = manifest_path(models_dir)
    if path.exists():
        manifest = load_manifest(path)
        check_data_dir(Path(data_dir), require_all_classes=True)
        check_manifest_files(manifest, path, data_dir, hint="point --data at the dataset it was made for, "
                             "or use another --out")
        return manifest
    manifest = build_manifest(scan_dataset(Path(data_dir), require_all_classes=True))
    save_manifest(manifest, path)
    log.info("wrote split manifest %s: %s", path, manifest.sizes())
    return manifest
