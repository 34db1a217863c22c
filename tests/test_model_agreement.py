"""The agreement count behind the Predict page's warning, on answers we write down."""

from __future__ import annotations

from benchmarks.model_agreement import agreement, verdict_counts
from bloodcell.abstention import NOT_A_CELL, NOT_CONFIDENT, UNFAMILIAR


def test_agreement_counts_images_where_every_model_answers_alike():
    per_model = {"a": ["basophil", "monocyte", "not confident", "myeloblast"],
                 "b": ["basophil", "monocyte", "not confident", "seg_neutrophil"],
                 "c": ["basophil", "basophil", "not confident", "myeloblast"]}
    labels = ["basophil", "monocyte", "monocyte", "myeloblast"]
    # Images 0 and 2 get one answer from all three; only image 0's is right (a flag is never right).
    assert agreement(per_model, labels) == {"images": 4, "all agree": 2, "right when all agree": 1}


def test_verdict_counts_say_how_often_each_flag_withheld_a_right_guess():
    answers = ["basophil", "monocyte", UNFAMILIAR, UNFAMILIAR, NOT_A_CELL]
    guesses = ["basophil", "monocyte", "myeloblast", "basophil", "basophil"]
    labels = ["basophil", "basophil", "myeloblast", "myeloblast", "monocyte"]
    assert verdict_counts(answers, guesses, labels) == {
        "answered": (2, 1), NOT_A_CELL: (1, 0), UNFAMILIAR: (2, 1), NOT_CONFIDENT: (0, 0)}
