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


def test_second_opinion_counts_only_confident_contradictions_of_unflagged_answers():
    from benchmarks.model_agreement import second_opinion

    labels = ["basophil", "monocyte", "monocyte", "myeloblast", "seg_neutrophil"]
    first = (["basophil", "basophil", NOT_CONFIDENT, "myeloblast", "monocyte"],
             ["basophil", "basophil", "monocyte", "myeloblast", "monocyte"])
    second = (["basophil", "monocyte", "basophil", NOT_CONFIDENT, "seg_neutrophil"],
              ["basophil", "monocyte", "basophil", "seg_neutrophil", "seg_neutrophil"])
    # Image 1 and 4: both unflagged, different classes, the second right; image 2: the first is flagged;
    # image 3: the second is flagged. The first answers images 1 and 4 wrongly without a flag.
    assert second_opinion(first, second, labels) == {
        "images": 5, "differs": 2, "second right when it differs": 2, "first wrong without a flag": 2,
        "of those, contradicted": 2}
