"""The agreement count behind the Predict page's warning, on answers we write down."""

from __future__ import annotations

from benchmarks.model_agreement import agreement


def test_agreement_counts_images_where_every_model_answers_alike():
    per_model = {"a": ["basophil", "monocyte", "not confident", "myeloblast"],
                 "b": ["basophil", "monocyte", "not confident", "seg_neutrophil"],
                 "c": ["basophil", "basophil", "not confident", "myeloblast"]}
    labels = ["basophil", "monocyte", "monocyte", "myeloblast"]
    # Images 0 and 2 get one answer from all three; only image 0's is right (a flag is never right).
    assert agreement(per_model, labels) == {"images": 4, "all agree": 2, "right when all agree": 1}
