"""The command line: help, clear one-line errors, evaluate and predict on real images."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bloodcell.cli import COMMANDS, main
from bloodcell.config import CLASS_NAMES, PROJECT_ROOT, SPLIT_SEED


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits for --help and bad arguments
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "bloodcell", "--help"], capture_output=True,
                            text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "usage:" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["train"],
        ["train", "--model", "resnet"],
        ["train", "--model", "cnn", "--epochs", "many"],
        ["predict", "--model", "cnn"],
        ["predict", "--min-confidence", "high", "x.jpg"],
        ["audit", "--limit", "some"],
        ["launch"],
    ],
)
def test_bad_arguments_are_one_line_exit_2(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "error" in err


def test_missing_data_is_one_line_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "-q", "train", "--model", "cnn", "--data", str(tmp_path / "none"),
                           "--out", str(tmp_path / "m"))
    assert code == 2 and "dataset folder not found" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_model_is_one_line_exit_2(capsys, tmp_path, drawn_dataset):
    code, _, err = run_cli(capsys, "-q", "evaluate", "--model", "cnn", "--data", str(drawn_dataset),
                           "--models-dir", str(tmp_path))
    assert code == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def test_missing_imagenet_weights_is_one_line(capsys, tmp_path, drawn_dataset):
    code, _, err = run_cli(capsys, "-q", "train", "--model", "mobilenetv2", "--data", str(drawn_dataset),
                           "--out", str(tmp_path), "--base-weights", str(tmp_path / "nope.h5"))
    assert code == 2 and "weights file not found" in err and len(err.strip().splitlines()) == 1


def test_train_seed_reaches_the_card(capsys, tmp_path, drawn_dataset):
    """A second run of one recipe: another seed, recorded in its card, on the same split."""
    for seed in (1, 2):
        out = tmp_path / f"seed{seed}"
        code, _, err = run_cli(capsys, "-q", "train", "--model", "cnn", "--data", str(drawn_dataset),
                               "--out", str(out), "--epochs", "1", "--image-size", "32", "--batch-size", "8",
                               "--seed", str(seed))
        assert code == 0, err
        card = json.loads((out / "cnn" / "card.json").read_text())
        assert card["hyperparameters"]["seed"] == seed
        assert card["split"]["seed"] == SPLIT_SEED


def test_train_set_changes_the_recipe_and_the_card_says_so(capsys, tmp_path, drawn_dataset):
    """A run of the lab notebook's kind from the command line: one recipe entry changed, recorded."""
    code, _, err = run_cli(capsys, "-q", "train", "--model", "cnn", "--data", str(drawn_dataset),
                           "--out", str(tmp_path), "--epochs", "1", "--image-size", "32", "--batch-size", "8",
                           "--set", "lr_factor=0.25", "--set", "learning_rate=0.002")
    assert code == 0, err
    card = json.loads((tmp_path / "cnn" / "card.json").read_text())
    assert card["recipe_options"] == {"lr_factor": 0.25, "learning_rate": 0.002}
    assert card["hyperparameters"]["lr_factor"] == 0.25 and card["hyperparameters"]["learning_rate"] == 0.002


@pytest.mark.parametrize("option, message", [
    ("nope=1", "KEY one of"),
    ("twin_share", "KEY one of"),
    ("epochs=two", "takes int"),
    ("twin_stain_parts=1", "takes bool"),
    ("focus_levels=5.7", "a list of numbers"),
    ("twin_stain_parts=true", "give twin_share or twin_pairs"),
    ("test_time_augmentation=rotations", "unknown test_time_augmentation"),
])
def test_train_set_refuses_what_the_recipe_cannot_take_in_one_line(capsys, tmp_path, drawn_dataset, option, message):
    code, _, err = run_cli(capsys, "-q", "train", "--model", "cnn", "--data", str(drawn_dataset),
                           "--out", str(tmp_path), "--epochs", "1", "--image-size", "32", "--set", option)
    # The drawn dataset's own warning (a duplicate kept in one split) may come first.
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err


def test_train_init_from_a_missing_model_is_one_line(capsys, tmp_path, drawn_dataset):
    code, _, err = run_cli(capsys, "-q", "train", "--model", "cnn", "--data", str(drawn_dataset), "--out",
                           str(tmp_path), "--epochs", "1", "--image-size", "32", "--init-from", str(tmp_path / "nope"))
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and "not found" in lines[0], err


def test_download_offline_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    import kagglehub

    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    code, _, err = run_cli(capsys, "download", "--out", str(tmp_path / "data"))
    assert code == 2 and "by hand" in err and "kaggle.com" in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture()
def small_real_folder(real_data, tmp_path):
    """Two classes, four real images each, plus a corrupt JPEG and a text file named .png."""
    root = tmp_path / "subset"
    for label in ("basophil", "seg_neutrophil"):
        (root / label).mkdir(parents=True)
        for path in sorted((real_data / label).iterdir())[:4]:
            shutil.copy(path, root / label / path.name)
    good = next((root / "basophil").iterdir())
    (root / "basophil" / "truncated.jpg").write_bytes(good.read_bytes()[:500])
    (root / "seg_neutrophil" / "notes.png").write_text("this is text, not a picture")
    return root


def test_evaluate_real_images_with_bad_files(capsys, shipped_models, small_real_folder, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, err = run_cli(capsys, "evaluate", "--model", "cnn", "--data", str(small_real_folder),
                                "--json", str(out))
    assert code == 0, err
    assert "truncated.jpg" in err and "notes.png" in err
    result = json.loads(out.read_text())
    assert result["n"] == 8 and result["classes"] == list(CLASS_NAMES)
    assert set(result) >= {"accuracy", "n", "classes", "confusion_matrix", "per_class"}
    matrix = result["confusion_matrix"]
    assert sum(map(sum, matrix)) == 8 and sum(matrix[0]) == 4 and sum(matrix[4]) == 4
    assert result["accuracy"] >= 0.75
    assert "accuracy" in stdout and "basophil" in stdout and "95% interval" in stdout


def test_predict_real_images_files_and_folders(capsys, shipped_models, small_real_folder, tmp_path):
    out = tmp_path / "pred.csv"
    single = next((small_real_folder / "seg_neutrophil").glob("*.jpg"))
    code, _, err = run_cli(capsys, "predict", "--model", "mobilenetv2", str(small_real_folder / "basophil"),
                           str(single), str(small_real_folder / "seg_neutrophil" / "notes.png"), "--csv", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "verdict", "reason", "predicted_class", "confidence", *CLASS_NAMES,
                             "ood_score", "red_cell_size", "zoom", "error"]
    assert len(rows) == 4 + 1 + 1 + 1  # 4 good + truncated in the folder, one file, the text file
    errors = {row["file"].rsplit("/", 1)[-1]: row["error"] for row in rows if row["error"]}
    assert set(errors) == {"truncated.jpg", "notes.png"}
    assert all(row["reason"] == row["error"] for row in rows if row["error"]), "an unreadable file's reason is why"
    good = [row for row in rows if not row["error"]]
    assert all(row["predicted_class"] in CLASS_NAMES for row in good)
    assert all(row["verdict"] == "ok" and row["reason"] == "" and float(row["ood_score"]) >= 0 for row in good)
    assert all(abs(sum(float(row[c]) for c in CLASS_NAMES) - 1) < 1e-3 for row in good)
    assert sum(row["predicted_class"] == "basophil" for row in good) >= 3
    # Training photos: their lone red cells put them inside the training magnifications.
    measured = [float(row["red_cell_size"]) for row in good if row["red_cell_size"]]
    assert measured and all(0.17 <= size <= 0.29 for size in measured)
    assert all(row["zoom"] == "1.00" for row in good)  # so they are shown as they are


def test_predict_gives_the_best_guess_in_each_labs_look_as_the_app_does(capsys, shipped_models, small_real_folder,
                                                                        tmp_path):
    from bloodcell.lookswap import LOOKS_FILE, load_looks
    from bloodcell.service import ModelService, look_swap

    out = tmp_path / "pred.csv"
    code, _, err = run_cli(capsys, "predict", "--model", "cellfocus", "--looks", str(small_real_folder / "basophil"),
                           str(small_real_folder / "seg_neutrophil" / "notes.png"), "--csv", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[-3:] == ["error", "in_munich_aml_look", "in_pbc_barcelona_look"]
    good = [row for row in rows if not row["error"]]
    assert good and all(row["in_munich_aml_look"] in CLASS_NAMES and row["in_pbc_barcelona_look"] in CLASS_NAMES
                        for row in good)
    assert all(row["in_munich_aml_look"] == row["in_pbc_barcelona_look"] == "" for row in rows if row["error"])
    first = Path(good[0]["file"])
    swap = look_swap(ModelService.load("cellfocus", shipped_models), first.name, first.read_bytes(),
                     load_looks(shipped_models / LOOKS_FILE))
    assert [a.predicted_class for a in swap.analyses] == [good[0]["in_munich_aml_look"],
                                                          good[0]["in_pbc_barcelona_look"]]
    # The looks add columns and change nothing else (each file is now decoded once, one by one).
    plain = tmp_path / "plain.csv"
    code, _, err = run_cli(capsys, "predict", "--model", "cellfocus", str(small_real_folder / "basophil"),
                           str(small_real_folder / "seg_neutrophil" / "notes.png"), "--csv", str(plain))
    assert code == 0, err
    plain_rows = list(csv.DictReader(plain.open()))
    shared = [column for column in plain_rows[0] if column not in ("confidence", *CLASS_NAMES, "ood_score")]
    assert [[row[c] for c in shared] for row in rows] == [[row[c] for c in shared] for row in plain_rows]
    for row, plain_row in zip(good, (r for r in plain_rows if not r["error"])):
        for column in (*CLASS_NAMES, "ood_score"):
            assert float(row[column]) == pytest.approx(float(plain_row[column]), abs=2e-4)


def test_predict_looks_without_the_looks_file_is_one_line_exit_2(capsys, tiny_models_dir, small_real_folder):
    image = next((small_real_folder / "basophil").glob("BA_*.jpg"))
    code, _, err = run_cli(capsys, "predict", "--models-dir", str(tiny_models_dir), "--model", "cnn", "--looks",
                           str(image))
    assert code == 2 and "python -m bloodcell looks" in err and "Traceback" not in err


def test_predict_to_stdout(capsys, shipped_models, small_real_folder):
    image = next((small_real_folder / "basophil").glob("BA_*.jpg"))
    code, out, _ = run_cli(capsys, "predict", "--model", "cnn", str(image))
    assert code == 0 and out.startswith("file,verdict,reason,predicted_class,confidence")


def test_predict_flags_what_is_not_a_blood_cell(capsys, shipped_models, tmp_path):
    from skimage import data as skimage_data
    from PIL import Image

    photos = {"cat.png": skimage_data.chelsea(), "coffee.png": skimage_data.coffee()}
    for name, pixels in photos.items():
        Image.fromarray(pixels).save(tmp_path / name)
    Image.new("RGB", (360, 360), (236, 226, 214)).save(tmp_path / "blank.png")
    code, out, err = run_cli(capsys, "predict", str(tmp_path), "--csv", str(tmp_path / "out.csv"))
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 3
    assert all(row["verdict"] == "does not look like a single blood-cell image" for row in rows), rows
    assert all(row["reason"] for row in rows), "each flag says why"


def test_predict_min_confidence_out_of_range(capsys, shipped_models, small_real_folder):
    code, _, err = run_cli(capsys, "predict", "--model", "cnn", "--min-confidence", "1.5", str(small_real_folder))
    assert code == 2 and "between 0 and 1" in err


def test_audit_command_prints_and_saves(capsys, tiny_models_dir, drawn_dataset):
    code, out, err = run_cli(capsys, "audit", "--model", "cnn", "--models-dir", str(tiny_models_dir),
                             "--data", str(drawn_dataset), "--limit", "3")
    assert code == 0, err
    assert "Shortcut audit of cnn (3 test images, limited)" in out
    assert "counterfactual" in out and "colour-only baseline" in out
    assert json.loads((tiny_models_dir / "cnn" / "audit.json").read_text())["test_images"] == 3


def test_evaluate_one_split_uses_that_splits_images_only(capsys, tiny_models_dir, drawn_dataset, tmp_path):
    from bloodcell.data import load_manifest, manifest_path

    out = tmp_path / "val.json"
    code, stdout, err = run_cli(capsys, "evaluate", "--model", "cnn", "--models-dir", str(tiny_models_dir),
                                "--data", str(drawn_dataset), "--split", "val", "--json", str(out))
    assert code == 0, err
    assert "(val split)" in stdout
    result = json.loads(out.read_text())
    val = load_manifest(manifest_path(tiny_models_dir)).paths("val")
    assert result["split"] == "val" and result["n"] == len(val)
    assert [sum(row) for row in result["confusion_matrix"]] == [
        sum(label == name for _, label in val) for name in CLASS_NAMES]


def test_evaluate_split_refuses_a_model_trained_on_another_split(capsys, tiny_models_dir, drawn_dataset, tmp_path):
    from bloodcell.data import load_manifest, manifest_path, save_manifest

    shutil.copytree(tiny_models_dir / "cnn", tmp_path / "cnn")
    other = load_manifest(manifest_path(tiny_models_dir))
    one_val, one_train = (next(f for f in other.files if f["split"] == name) for name in ("val", "train"))
    one_val["split"], one_train["split"] = "train", "val"  # one image the model trained on is now "validation"
    save_manifest(other, manifest_path(tmp_path))
    code, _, err = run_cli(capsys, "-q", "evaluate", "--model", "cnn", "--models-dir", str(tmp_path),
                           "--data", str(drawn_dataset), "--split", "val")
    assert code == 2 and "another split" in err and len(err.strip().splitlines()) == 1


def test_evaluate_split_names_images_missing_from_the_data(capsys, tiny_models_dir, tmp_path):
    empty = tmp_path / "empty"
    for name in CLASS_NAMES:
        (empty / name).mkdir(parents=True)
    code, _, err = run_cli(capsys, "-q", "evaluate", "--model", "cnn", "--models-dir", str(tiny_models_dir),
                           "--data", str(empty), "--split", "test")
    assert code == 2 and "are not in" in err and "point --data" in err and len(err.strip().splitlines()) == 1


def test_predict_gives_the_second_opinion_as_the_app_does(capsys, shipped_models, small_real_folder,
                                                          cross_source_data, tmp_path):
    """With the model the second opinion checks, the CSV gains its column: the checking model's class
    where it contradicts an unflagged answer, empty elsewhere and for unreadable files."""
    from bloodcell.service import SECOND_OPINION

    out = tmp_path / "pred.csv"
    other_lab = cross_source_data / "seg_neutrophil" / "PBC_SNE_106989.jpg"
    code, _, err = run_cli(capsys, "predict", "--model", SECOND_OPINION[0], str(small_real_folder / "basophil"),
                           str(other_lab), "--csv", str(out))
    assert code == 0, err
    rows = {Path(row["file"]).name: row for row in csv.DictReader(out.open())}
    assert list(next(iter(rows.values())))[-1] == "second_opinion"
    assert rows[other_lab.name]["predicted_class"] == "monocyte"
    assert rows[other_lab.name]["second_opinion"] == "seg_neutrophil"
    assert all(row["second_opinion"] == "" for name, row in rows.items() if name != other_lab.name)
    assert f"{SECOND_OPINION[1]} contradicts 1 of" in err
    # Any other model: no second opinion, no column.
    code, _, err = run_cli(capsys, "predict", "--model", "cellfocus", str(other_lab), "--csv", str(out))
    assert code == 0 and "second_opinion" not in out.read_text()


def test_predict_with_the_default_cascade_names_the_model_that_answered(capsys, shipped_models, real_data, tmp_path):
    """MO_707494 (a test monocyte): cellagreepair calls it a myeloblast without confidence, and the cell looks
    like the training images, so the default cascade hands it to cellpair, which calls it a monocyte. The
    default's CSV says so in its last column; another cell keeps cellagreepair's answer."""
    from bloodcell.config import DEFAULT_MODEL, ROUTED_MODELS

    primary, fallback = ROUTED_MODELS[DEFAULT_MODEL]
    handed_over = real_data / "monocyte" / "MO_707494.jpg"
    kept = sorted((real_data / "myeloblast").iterdir())[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    out = tmp_path / "pred.csv"
    code, _, err = run_cli(capsys, "predict", str(handed_over), str(kept), str(broken), "--csv", str(out))
    assert code == 0, err
    rows = {Path(row["file"]).name: row for row in csv.DictReader(out.open())}
    assert list(rows[handed_over.name])[-1] == "answered_by"
    assert (rows[handed_over.name]["answered_by"], rows[handed_over.name]["predicted_class"]) == (fallback, "monocyte")
    assert (rows[kept.name]["answered_by"], rows[kept.name]["predicted_class"]) == (primary, "myeloblast")
    assert rows[broken.name]["verdict"] == "unreadable" and rows[broken.name]["answered_by"] == ""
