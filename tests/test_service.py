"""The app's per-image service: results, errors, table, CSV and differential count."""

from __future__ import annotations

import csv
import io
import threading

import numpy as np
import pytest

from bloodcell.abstention import NOT_A_CELL, NOT_CONFIDENT, UNFAMILIAR
from bloodcell.config import CLASS_NAMES, SHIPPED_MODEL_NAMES
from bloodcell.explain import GRADCAM
from bloodcell.service import (AGREEMENT_MEASURED_WITH, LOOK_SWAP_KEPT_ON_TEST, Analysis, LazyPhoto, LookSwap, ModelService,
                               differential_count, look_swap, model_answers, results_rows, rows_to_csv,
                               second_opinion_differs)
from conftest import draw_cell, encode


@pytest.fixture(scope="module")
def service(tiny_models_dir):
    return ModelService.load("cnn", tiny_models_dir)


def test_analyse_good_and_bad_bytes(service):
    good = service.analyse("cell.png", encode(draw_cell("monocyte", size=80)))
    assert good.ok and good.method == GRADCAM
    assert good.predicted_class in CLASS_NAMES and 0 <= good.confidence <= 1
    assert good.heatmap.shape == (32, 32) and good.image_size == (80, 80)
    bad = service.analyse("notes.jpg", b"plain text")
    assert not bad.ok and "not a readable image" in bad.error and bad.predicted_class is None


def test_a_photo_shared_by_models_is_decoded_once(service, monkeypatch):
    from bloodcell import service as service_module

    data = encode(draw_cell("monocyte", size=80))
    decoded = []
    read = service_module.read_image
    monkeypatch.setattr(service_module, "read_image", lambda raw: decoded.append(1) or read(raw))
    photo = LazyPhoto(data)
    first, second = service.analyse("cell.png", photo), service.analyse("cell.png", photo)
    assert len(decoded) == 1
    alone = service.analyse("cell.png", data)
    assert np.allclose(first.probabilities, alone.probabilities) and np.allclose(second.heatmap, alone.heatmap)
    assert first.red_cell_size == alone.red_cell_size and first.view_box == alone.view_box
    unreadable = LazyPhoto(b"plain text")
    assert [service.analyse("notes.jpg", unreadable).ok for _ in range(2)] == [False, False]
    assert "not a readable image" in service.analyse("notes.jpg", unreadable).error


def test_chosen_class_is_explained(service):
    result = service.analyse("cell.png", encode(draw_cell("basophil")), class_index=3)
    assert result.class_index == 3


def test_concurrent_calls_are_serialised(service):
    data = encode(draw_cell("myeloblast", size=64))
    expected = service.analyse("x", data).probabilities
    outcomes: list[np.ndarray] = []

    def work():
        for _ in range(5):
            outcomes.append(service.analyse("x", data).probabilities)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 20
    assert all(np.allclose(p, expected, atol=1e-6) for p in outcomes)


def make(name, probabilities=None, error=None, model="cnn"):
    return Analysis(name, model, None if probabilities is None else np.asarray(probabilities, np.float32),
                    0, None, GRADCAM, error)


def test_rows_csv_and_differential_count():
    analyses = [
        make("a.jpg", [0.9, 0.05, 0.05, 0, 0]),
        make("b.jpg", [0.1, 0.1, 0.5, 0.2, 0.1]),  # unsure at 0.7
        make("c.jpg", [0, 0, 0, 0.05, 0.95]),
        make("d.jpg", error="file is empty (0 bytes)"),
    ]
    rows = results_rows(analyses, threshold=0.7)
    assert [r["predicted_class"] for r in rows] == ["basophil", "monocyte", "seg_neutrophil", ""]
    assert [r["verdict"] for r in rows] == ["ok", "not confident", "ok", "unreadable"]
    assert [r["reason"] for r in rows] == ["", "top probability 50% below 70%", "", "file is empty (0 bytes)"]
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv(rows))))
    assert parsed[3]["error"] == "file is empty (0 bytes)" and parsed[0]["basophil"] == "0.9"
    counts = differential_count(analyses, threshold=0.7)
    assert counts["basophil"] == 1 and counts["seg_neutrophil"] == 1
    assert counts["unsure"] == 1 and counts["unreadable"] == 1 and counts["monocyte"] == 0
    far = make("e.jpg", [0.99, 0.01, 0, 0, 0])
    far.ood_score, far.ood_threshold = 30.0, 10.0
    assert results_rows([far])[0]["verdict"] == "unlike the training images"
    assert results_rows([far])[0]["reason"].startswith("far from every training image")
    assert differential_count([far])["unlike training"] == 1
    far.cell_problem = "several cells in the image"
    assert results_rows([far])[0]["verdict"] == NOT_A_CELL
    assert differential_count([far])["not a cell"] == 1


def test_cell_view_models_return_what_they_saw_and_say_which_view(service, shipped_models):
    from drawn_fields import draw_field, photographed_smaller

    assert service.analyse("cell.png", encode(draw_cell("monocyte", size=80))).model_view is None
    image, _ = draw_field("peach", seed=3)
    grey = ModelService.load("cellgrey", shipped_models).analyse("field.png", encode(image))
    assert grey.ok and grey.model_view.shape == (224, 224, 3) and grey.model_view.dtype == np.uint8
    assert np.array_equal(grey.model_view[..., 0], grey.model_view[..., 2])
    assert "grey" in grey.view_description
    left, top, right, bottom = grey.view_box
    assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
    colour = ModelService.load("cellfocus", shipped_models).analyse("field.png", encode(image))
    assert not np.array_equal(colour.model_view[..., 0], colour.model_view[..., 2])
    assert "grey" not in colour.view_description
    # A cell photographed smaller: the filled view's box hugs it, the cell view's stays 0.6 of the photo
    # the models see, which here is cropped to the training magnification (bloodcell.framing).
    small = photographed_smaller(image, 0.7, "peach")
    filled = ModelService.load("cellfill", shipped_models).analyse("small.png", encode(small))
    kept = ModelService.load("cellfocus", shipped_models).analyse("small.png", encode(small))
    assert "fills the frame" in filled.view_description
    assert filled.view_box[2] - filled.view_box[0] < 0.5
    assert kept.zoom > 1.2 and kept.view_box[2] - kept.view_box[0] >= 0.6 / kept.zoom - 0.01


def test_model_answers_group_the_models_by_what_they_say():
    same = [make("x.jpg", [0.9, 0.1, 0, 0, 0], model=m) for m in ("a", "b")]
    assert model_answers(same) == {"basophil": ["a", "b"]}
    far = make("x.jpg", [0.99, 0.01, 0, 0, 0], model="d")
    far.ood_score, far.ood_threshold = 30.0, 10.0
    mixed = [*same, make("x.jpg", [0, 0.2, 0.8, 0, 0], model="c"), make("x.jpg", [0.3, 0.3, 0.4, 0, 0], model="e"),
             far, make("x.jpg", error="unreadable", model="f")]
    assert model_answers(mixed, threshold=0.7) == {"basophil": ["a", "b"], "monocyte": ["c"],
                                                   NOT_CONFIDENT: ["e"], UNFAMILIAR: ["d"]}


def test_look_swap_renders_the_photo_in_each_look_and_analyses_each(service, shipped_models):
    from drawn_fields import draw_field

    from bloodcell.lookswap import LOOKS_FILE, load_looks

    looks = load_looks(shipped_models / LOOKS_FILE)
    photo, _ = draw_field("peach", seed=5)
    swap = look_swap(service, "field.png", encode(photo), looks)
    assert swap.problem is None
    assert [r.lab for r in swap.renderings] == sorted(looks)
    assert all(a.ok and a.name == f"field.png in {r.lab}'s look" for r, a in zip(swap.renderings, swap.analyses))
    original = service.analyse("field.png", encode(photo))
    assert swap.summary(original).startswith("Its best guess")


@pytest.mark.parametrize("data, words", [(b"plain text", "not a readable image"),
                                         (None, "no stained nucleus found")])
def test_look_swap_says_why_there_is_none(service, shipped_models, data, words):
    from PIL import Image

    from bloodcell.lookswap import LOOKS_FILE, load_looks

    data = data or encode(Image.new("RGB", (120, 120), (240, 230, 220)))
    swap = look_swap(service, "x.png", data, load_looks(shipped_models / LOOKS_FILE))
    assert words in swap.problem and not swap.renderings
    assert swap.summary(service.analyse("x.png", data)) == ""


def test_look_swap_summary_says_whether_the_best_guess_moved():
    from PIL import Image

    from bloodcell.lookswap import Rendering

    def guess(label: str) -> Analysis:
        return Analysis("cell.png", "m", probabilities=np.eye(len(CLASS_NAMES))[CLASS_NAMES.index(label)])

    renderings = [Rendering(lab, Image.new("RGB", (4, 4)), 1.0, False) for lab in ("Lab A", "Lab B")]
    kept = LookSwap(renderings, [guess("monocyte"), guess("monocyte")])
    assert kept.summary(guess("monocyte")).startswith("Its best guess stays Monocyte in both labs' looks")
    moved = LookSwap(renderings, [guess("monocyte"), guess("myeloblast")]).summary(guess("monocyte"))
    assert "changes with the look" in moved and "in Lab B's look, Myeloblast" in moved
    assert "test split" not in moved, "no habit quoted for a model that was never measured"
    assert set(LOOK_SWAP_KEPT_ON_TEST) == set(SHIPPED_MODEL_NAMES), "every shipped model's habit is measured"
    assert set(AGREEMENT_MEASURED_WITH) == set(SHIPPED_MODEL_NAMES), "the agreement quoted is the shipped models'"
    shipped = Analysis("cell.png", "cnn", probabilities=guess("monocyte").probabilities)
    assert "On the test split, cnn keeps its best guess in both looks for 36% of the cells" in \
        LookSwap(renderings, [guess("monocyte"), guess("myeloblast")]).summary(shipped)


def test_results_rows_carry_the_best_guess_in_each_look_where_a_swap_was_shown():
    from PIL import Image

    from bloodcell.lookswap import Rendering

    def guess(label: str, model: str = "m") -> Analysis:
        return Analysis("cell.png", model, probabilities=np.eye(len(CLASS_NAMES))[CLASS_NAMES.index(label)])

    renderings = [Rendering(lab, Image.new("RGB", (4, 4)), 1.0, False) for lab in ("Munich AML", "PBC Barcelona")]
    swap = LookSwap(renderings, [guess("monocyte"), guess("myeloblast")])
    rows = results_rows([guess("monocyte"), guess("monocyte", "other")], swaps=[swap, None])
    assert [row["in_munich_aml_look"] for row in rows] == ["monocyte", ""]
    assert [row["in_pbc_barcelona_look"] for row in rows] == ["myeloblast", ""]
    assert "in_munich_aml_look" not in results_rows([guess("monocyte")])[0], "no columns without a swap"


def test_a_second_opinion_counts_only_when_both_models_answer_without_a_flag():
    assert second_opinion_differs("ok", "monocyte", "ok", "seg_neutrophil")
    assert not second_opinion_differs("ok", "monocyte", "ok", "monocyte")
    assert not second_opinion_differs("ok", "monocyte", NOT_CONFIDENT, "seg_neutrophil"), "an unsure second opinion"
    assert not second_opinion_differs(UNFAMILIAR, "monocyte", "ok", "seg_neutrophil"), "already flagged"
    assert not second_opinion_differs("ok", "monocyte", None, None), "no second opinion"


def test_rows_give_the_second_opinion_only_where_it_contradicts_an_unflagged_answer():
    sure = np.eye(len(CLASS_NAMES))[CLASS_NAMES.index("monocyte")]
    unsure = np.full(len(CLASS_NAMES), 1 / len(CLASS_NAMES))
    analyses = [make("a.png", sure), make("b.png", sure), make("c.png", unsure), make("d.png", sure),
                make("e.png", error="not a readable image")]
    neutrophil = make("x.png", np.eye(len(CLASS_NAMES))[CLASS_NAMES.index("seg_neutrophil")], model="other")
    seconds = [neutrophil, make("x.png", sure, model="other"), neutrophil, None, neutrophil]
    rows = results_rows(analyses, second_opinions=seconds)
    # a: contradicted; b: the same answer; c: the answer is flagged (unsure); d: none asked; e: unreadable.
    assert [row["second_opinion"] for row in rows] == ["seg_neutrophil", "", "", "", ""]
    assert "second_opinion" not in results_rows(analyses)[0], "no column where no second opinion was asked"


def test_rows_name_the_model_that_answered_only_for_a_cascade():
    from dataclasses import replace

    sure = np.eye(len(CLASS_NAMES))[CLASS_NAMES.index("monocyte")]
    analyses = [replace(make("a.png", sure), answered_by="first"), replace(make("b.png", sure), answered_by="second"),
                make("c.png", error="not a readable image")]
    assert [row["answered_by"] for row in results_rows(analyses)] == ["first", "second", ""]
    assert "answered_by" not in results_rows([make("a.png", sure)])[0], "no column for a model that is no cascade"
