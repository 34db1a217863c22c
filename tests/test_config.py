"""Settings resolve in the documented order: option, environment, default."""

from __future__ import annotations

from pathlib import Path

import pytest

from bloodcell.config import (CLASS_NAMES, DATA_ENV, DEFAULT_DATA_DIR, DEFAULT_MODELS_DIR, IMAGENET_WEIGHTS_ENV,
                              MODELS_ENV, check_model_name, resolve_data_dir, resolve_imagenet_weights,
                              resolve_models_dir)
from bloodcell.errors import BloodcellError


def test_class_names_and_order_are_fixed():
    assert CLASS_NAMES == ("basophil", "erythroblast", "monocyte", "myeloblast", "seg_neutrophil")


@pytest.mark.parametrize("name", ["", "../cellpair", "a/b", ".hidden", "cell pair", "x" * 65])
def test_a_new_models_name_cannot_leave_the_models_folder(name):
    with pytest.raises(BloodcellError, match="is not a model name"):
        check_model_name(name)


def test_plain_model_names_are_accepted():
    assert check_model_name("cellagree") == "cellagree" and check_model_name("agree-soup_2") == "agree-soup_2"


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert resolve_data_dir() == DEFAULT_DATA_DIR
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "option") == tmp_path / "option"


def test_models_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert resolve_models_dir() == DEFAULT_MODELS_DIR
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert resolve_models_dir() == tmp_path


def test_imagenet_weights_default_to_download(monkeypatch, tmp_path):
    monkeypatch.delenv(IMAGENET_WEIGHTS_ENV, raising=False)
    assert resolve_imagenet_weights() == "imagenet"
    monkeypatch.setenv(IMAGENET_WEIGHTS_ENV, str(tmp_path / "w.h5"))
    assert resolve_imagenet_weights() == str(tmp_path / "w.h5")
    assert resolve_imagenet_weights("local.h5") == str(Path("local.h5"))


def test_other_lab_is_the_lab_that_did_not_photograph_the_class():
    from bloodcell.config import SOURCE_LAB, other_lab

    for label, lab in SOURCE_LAB.items():
        assert other_lab(label) != lab and other_lab(label) in SOURCE_LAB.values()
