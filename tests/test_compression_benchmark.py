"""The compression benchmark shows each image as its file, its twin, and each saved as the other lab saves."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.compression import RENDERINGS, group_measures, lab_compression, measure, renderings
from bloodcell.compression import compress_like, jpeg_settings
from bloodcell.counterfactual import lab_looks
from bloodcell.data import build_manifest, scan_dataset
from bloodcell.imaging import read_image
from bloodcell.inference import Classifier


def test_group_measures_count_each_labs_cells_in_its_own_group():
    # Classes: basophil, erythroblast, monocyte (Barcelona), myeloblast, seg_neutrophil (Munich).
    probabilities = np.array([[0.7, 0.1, 0.0, 0.2, 0.0],    # basophil, right
                              [0.0, 0.2, 0.0, 0.5, 0.3],    # monocyte put in the Munich group
                              [0.0, 0.0, 0.1, 0.1, 0.8]])   # neutrophil, right
    measures = group_measures(probabilities, ["basophil", "monocyte", "seg_neutrophil"])
    assert measures["accuracy"] == pytest.approx(2 / 3)
    assert measures["PBC Barcelona own group"] == 0.5
    assert measures["PBC Barcelona own group probability"] == pytest.approx((0.8 + 0.2) / 2)
    assert measures["Munich AML own group"] == 1.0
    assert measures["Munich AML own group probability"] == pytest.approx(0.9)


@pytest.fixture(scope="module")
def drawn_setup(drawn_dataset):
    manifest = build_manifest(scan_dataset(drawn_dataset))
    pairs = [(p, label) for p, label in manifest.paths("train") if str(p).endswith(".JPG")][:4]
    return manifest, pairs, lab_looks(manifest, drawn_dataset), lab_compression(manifest, drawn_dataset)


def test_renderings_are_the_file_the_twin_and_each_compressed_as_the_other_lab(drawn_dataset, drawn_setup):
    manifest, pairs, looks, compression = drawn_setup
    drawn_jpeg = jpeg_settings(drawn_dataset / pairs[0][0])
    assert all(settings == drawn_jpeg for settings in compression.values())
    rendered = renderings(drawn_dataset / pairs[0][0], pairs[0][1], 0, looks, compression)
    assert tuple(rendered) == RENDERINGS
    assert rendered["photo"] == (drawn_dataset / pairs[0][0]).read_bytes()
    photo, twin = read_image(rendered["photo"]), read_image(rendered["twin"])
    np.testing.assert_array_equal(np.asarray(read_image(rendered["twin, other lab's JPEG"])),
                                  np.asarray(compress_like(twin, drawn_jpeg)))
    np.testing.assert_array_equal(np.asarray(read_image(rendered["photo, other lab's JPEG"])),
                                  np.asarray(compress_like(photo, drawn_jpeg)))
    with pytest.raises(ValueError, match="no JPEG"):
        renderings(drawn_dataset / pairs[0][0], pairs[0][1], 0, looks, dict.fromkeys(compression))


def test_measure_gives_every_model_every_rendering(tiny_models_dir, drawn_dataset, drawn_setup):
    _, pairs, looks, compression = drawn_setup
    results = measure({"cnn": Classifier.load("cnn", tiny_models_dir)}, pairs, drawn_dataset, looks, compression)
    assert tuple(results["cnn"]) == RENDERINGS
    for row in results["cnn"].values():
        assert all(0.0 <= value <= 1.0 for value in row.values())
