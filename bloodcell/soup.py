"""Average the weights of several training runs of one recipe into one model.

Runs of one MobileNetV2 recipe start from the same ImageNet weights and
fine-tune the same top blocks with batch norm frozen, so their weights stay
close enough that their average is itself a working model (a uniform "model
soup", Wortsman et al., ICML 2022). Unlike an ensemble it costs one model's
time and memory when predicting, and Grad-CAM still explains one network.
Runs trained from random weights (the CNN) do not share a starting point, so
they are refused.

The soup is then reported on exactly like a trained model: test metrics,
LiteRT file, temperature and out-of-distribution check, all from the train and
validation splits (bloodcell.training).
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bloodcell.config import check_model_name
from bloodcell.data import load_manifest, manifest_path, sha256_file
from bloodcell.errors import BloodcellError
from bloodcell.inference import CARD_FILE, HISTORY_FILE, MODEL_FILE, read_json
from bloodcell.models import get_spec

log = logging.getLogger("bloodcell")

SOUP_METHOD = "uniform average of the weights of runs of one recipe (model soup, Wortsman et al. 2022)"
# Card fields that must agree between runs for their average to mean anything.
MATCHING_FIELDS = ("name", "classes", "input_size", "view", "test_time_augmentation", "last_conv_layer")


def _run_summary(folder: Path, card: dict) -> dict:
    return {
        "folder": str(folder),
        "seed": card.get("hyperparameters", {}).get("seed"),
        "epochs_run": card.get("epochs_run"),
        "best_epoch": card.get("best_epoch"),
        "training_seconds": card.get("training_seconds"),
        "file_sha256": card.get("file_sha256"),
        "test_accuracy": card.get("test_metrics", {}).get("accuracy"),
        "trained_at": card.get("trained_at"),
        "environment": card.get("environment"),
    }


def check_runs(run_dirs: list[Path]) -> list[dict]:
    """The runs' cards, after checking that the runs can be averaged; a clear error if not."""
    if len(run_dirs) < 2:
        raise BloodcellError("a soup needs at least two runs (model folders)")
    cards = []
    for folder in run_dirs:
        if not (folder / MODEL_FILE).is_file() or not (folder / CARD_FILE).is_file():
            raise BloodcellError(f"{folder} is not a model folder ({MODEL_FILE} and {CARD_FILE} expected)")
        card = read_json(folder / CARD_FILE)
        if card.get("soup"):
            raise BloodcellError(f"{folder} is already an average of runs; pass its runs instead, so that "
                                 "each run counts once")
        cards.append(card)
    first = cards[0]
    if get_spec(str(first.get("name"))).backbone != "mobilenetv2":
        raise BloodcellError(f"{first['name']} trains from random weights, so its runs share no starting "
                             "point and their average is not a model; only fine-tuned MobileNetV2 runs "
                             "can be averaged")
    recipe = {k: v for k, v in first.get("hyperparameters", {}).items() if k != "seed"}
    for folder, card in zip(run_dirs[1:], cards[1:]):
        for field in MATCHING_FIELDS:
            if card.get(field) != first.get(field):
                raise BloodcellError(f"{folder} differs from {run_dirs[0]} in {field}: "
                                     f"{card.get(field)!r} against {first.get(field)!r}")
        if card.get("split", {}).get("manifest_sha256") != first.get("split", {}).get("manifest_sha256"):
            raise BloodcellError(f"{folder} was trained on another split than {run_dirs[0]}")
        if {k: v for k, v in card.get("hyperparameters", {}).items() if k != "seed"} != recipe:
            raise BloodcellError(f"{folder} was trained with another recipe than {run_dirs[0]}; "
                                 "only runs of one recipe, differing in their seed, can be averaged")
        if (card.get("imagenet_weights") or {}).get("sha256") != (first.get("imagenet_weights") or {}).get("sha256"):
            raise BloodcellError(f"{folder} started from other ImageNet weights than {run_dirs[0]}")
    seeds = [card.get("hyperparameters", {}).get("seed") for card in cards]
    files = [card.get("file_sha256") for card in cards]
    known_seeds = [seed for seed in seeds if seed is not None]
    if len(set(files)) < len(files) or len(set(known_seeds)) < len(known_seeds):
        raise BloodcellError(f"the runs must differ: seeds {seeds}; the same run twice is not a soup")
    return cards


def average_weights(weight_lists: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of several models' weights (same architecture, same order)."""
    first = weight_lists[0]
    for weights in weight_lists[1:]:
        if len(weights) != len(first) or any(a.shape != b.shape for a, b in zip(weights, first)):
            raise BloodcellError("the runs' networks differ in shape, so their weights cannot be averaged")
    return [np.mean([weights[i] for weights in weight_lists], axis=0).astype(first[i].dtype)
            for i in range(len(first))]


def soup_history(histories: list[list[dict]]) -> list[dict]:
    """Every run's epochs in one list, each row marked with its run (1, 2, ...)."""
    return [{**row, "run": index} for index, history in enumerate(histories, start=1) for row in history]


def make_soup(run_dirs: list[Path], data_dir: Path, models_dir: Path, name: str | None = None) -> Path:
    """Average the runs in `run_dirs` into `models_dir/<name>/`, report on it, and return the folder.

    `name` defaults to the runs' model name (celltwin's runs make a celltwin).
    """
    import keras

    from bloodcell.training import finish_model_folder, remove_stale_results, report_test_split

    run_dirs = [Path(folder) for folder in run_dirs]
    data_dir, models_dir = Path(data_dir), Path(models_dir)
    cards = check_runs(run_dirs)
    first = cards[0]
    name = check_model_name(name) if name is not None else first["name"]
    out = models_dir / name
    if out.resolve() in {folder.resolve() for folder in run_dirs}:
        raise BloodcellError(f"the soup would overwrite one of its runs ({out}); write it to another --out")
    manifest_file = manifest_path(models_dir)
    if manifest_file.is_file():
        manifest = load_manifest(manifest_file)
        if manifest.content_hash() != first["split"]["manifest_sha256"]:
            raise BloodcellError(f"the runs were trained on another split than {manifest_file}")
    else:
        manifest = load_manifest(manifest_path(run_dirs[0].parent))
        models_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest_path(run_dirs[0].parent), manifest_file)

    models = [keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True) for folder in run_dirs]
    soup = keras.Model.from_config(models[0].get_config())
    soup.set_weights(average_weights([model.get_weights() for model in models]))
    model_path = out / MODEL_FILE
    model_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_results(out)
    soup.save(model_path)
    log.info("%s: averaged %d runs into %s", name, len(run_dirs), model_path)

    metrics = report_test_split(model_path, name, first["view"], first.get("test_time_augmentation"),
                                manifest, data_dir, first["input_size"],
                                first.get("hyperparameters", {}).get("batch_size", 32))
    runs = [_run_summary(folder, card) for folder, card in zip(run_dirs, cards)]
    card = {key: value for key, value in first.items() if key not in ("calibration", "ood", "lite")}
    card.update({
        "name": name,
        "description": first["description"].rstrip(".") + f"; the weights averaged over {len(runs)} "
                       "training runs of this recipe.",
        "file_sha256": sha256_file(model_path),
        "file_size_bytes": model_path.stat().st_size,
        "hyperparameters": {**first["hyperparameters"], "seed": [run["seed"] for run in runs]},
        "soup": {"method": SOUP_METHOD, "runs": runs,
                 "why": "one model's cost when predicting, with the steadiness of several runs: "
                        "single runs of one recipe differ by a test image or two and by many "
                        "points on cells from another lab"},
        # The cost of the whole model: every run's epochs and training time.
        "epochs_run": sum(run["epochs_run"] or 0 for run in runs),
        "best_epoch": None,
        "training_seconds": round(sum(run["training_seconds"] or 0 for run in runs), 1),
        "test_metrics": {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n": metrics["n"]},
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    histories = [read_json(folder / HISTORY_FILE) if (folder / HISTORY_FILE).is_file() else []
                 for folder in run_dirs]
    return finish_model_folder(out, soup_history(histories), metrics, card, data_dir, manifest)
