"""Every page renders with and without the dataset; Predict classifies and explains."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from bloodcell.config import CLASS_NAMES, CROSS_SOURCE_ENV, DATA_ENV, MODELS_ENV, PROJECT_ROOT, SHIPPED_MODEL_NAMES
from bloodcell.cells import DISPLAY_NAMES
from conftest import draw_cell, encode

PAGES = ["pages/home.py", "pages/dataset.py", "pages/training.py", "pages/predict.py", "pages/trust.py",
         "pages/about.py"]
TIMEOUT = 120


def best_on_other_lab(models) -> tuple[str, float]:
    """The model most often right on the cross-source cells, and its accuracy, read from its measured file."""
    cross = {p.parent.name: json.loads(p.read_text())["accuracy"] for p in models.glob("*/cross_source.json")}
    best = max(cross, key=cross.get)
    return best, cross[best]


def open_page(page: str | None = None) -> AppTest:
    app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    app.run()
    if page:
        app.switch_page(page).run()
    return app


def compare_toggle(app: AppTest):
    return next(t for t in app.toggle if t.label.startswith("Compare with"))


def look_swap_toggle(app: AppTest):
    return next(t for t in app.toggle if t.label.startswith("Show each cell in both training labs' looks"))


def verdicts(app: AppTest) -> list[str]:
    """The verdict boxes' texts (a second opinion beside a verdict is not one)."""
    return [element.value for element in [*app.success, *app.warning] if "Second opinion" not in element.value]


@pytest.fixture()
def with_data(monkeypatch, real_data, cross_source_data, shipped_models):
    monkeypatch.setenv(DATA_ENV, str(real_data))
    monkeypatch.setenv(CROSS_SOURCE_ENV, str(cross_source_data))
    monkeypatch.setenv(MODELS_ENV, str(shipped_models))


@pytest.fixture()
def without_data(monkeypatch, tmp_path, shipped_models):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "no-dataset-here"))
    monkeypatch.setenv(MODELS_ENV, str(shipped_models))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_dataset(with_data, page):
    app = open_page(page)
    assert not app.exception, app.exception
    assert app.title, "every page has a title"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_dataset(without_data, page):
    app = open_page(page)
    assert not app.exception, app.exception
    if page == "pages/dataset.py":
        assert any("python -m bloodcell download" in info.value for info in app.info)


def test_dataset_page_says_how_each_classs_files_were_saved(with_data):
    app = open_page("pages/dataset.py")
    assert not app.exception, app.exception
    saved = next(frame.value for frame in app.dataframe if "saved as" in frame.value.columns)
    by_class = {label: set(saved[saved["class"] == label]["saved as"]) for label in saved["class"]}
    assert "JPEG quality 75, colour 4:4:4" in by_class["basophil"]
    assert by_class["seg_neutrophil"] == {"JPEG quality 95, colour 4:2:0"}


def test_training_page_gives_each_test_accuracy_its_interval(without_data):
    app = open_page("pages/training.py")
    assert not app.exception, app.exception
    intervals = [c.value for c in app.caption if c.value.startswith("95% interval")]
    assert intervals and all("test images" in text for text in intervals)


def test_app_without_models_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    for page in ("pages/predict.py", "pages/training.py"):
        app = open_page(page)
        assert not app.exception
        assert any("bloodcell train" in e.value for e in [*app.error, *app.info])


def test_predict_uploaded_cell_shows_class_and_heatmap(with_data, real_data):
    path = sorted((real_data / "myeloblast").iterdir())[0]
    app = open_page("pages/predict.py")
    app.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/jpeg")).run()
    assert not app.exception, app.exception
    assert not app.error
    shown = " ".join(verdicts(app))
    assert any(DISPLAY_NAMES[c] in shown for c in CLASS_NAMES)
    images = app.get("image")
    assert len(images) >= 2  # the input and its heatmap overlay
    captions = " ".join(c for image in images for c in image.captions)
    assert "Grad-CAM" in captions


def test_predict_says_whether_the_photos_magnification_is_one_the_models_saw(with_data, real_data):
    """A Barcelona photo is read by its red cells as a training magnification; shrunk, as a lower one."""
    from drawn_fields import photographed_smaller

    from bloodcell.imaging import read_image
    from bloodcell.redcells import photo_red_cell_size

    photos = (read_image(path) for path in sorted((real_data / "basophil").iterdir())[:20])
    photo = next(image for image in photos if photo_red_cell_size(image))
    app = open_page("pages/predict.py")
    app.file_uploader(key="uploads").set_value(
        [("usual.png", encode(photo), "image/png"),
         ("farther.png", encode(photographed_smaller(photo, 0.6, "peach")), "image/png")]).run()
    assert not app.exception, app.exception
    notes = [c.value for c in app.caption if c.value.startswith("Red cells span")]
    assert len(notes) == 2
    assert "one the models have seen" in notes[0] and "lower magnification" in notes[1]


def test_a_photo_that_is_no_blood_cell_gets_no_class(with_data):
    from skimage import data as skimage_data
    from PIL import Image

    app = open_page("pages/predict.py")
    cat = encode(Image.fromarray(skimage_data.chelsea()))
    app.file_uploader(key="uploads").set_value(("cat.png", cat, "image/png")).run()
    assert not app.exception, app.exception
    assert not verdicts(app), "no class is claimed for a cat"
    assert any("Does not look like a single blood-cell image" in e.value for e in app.error)


def test_another_labs_cell_far_from_the_training_data_is_called_unfamiliar_not_a_non_cell(
        with_data, cross_source_data, shipped_models):
    """A real neutrophil from the other lab that the default model's outlier check flags: the page
    says it is unlike the training images and gives the best guess, never "not a blood cell"."""
    from bloodcell.abstention import UNFAMILIAR
    from bloodcell.config import DEFAULT_MODEL
    from bloodcell.inference import Classifier

    classifier = Classifier.load(DEFAULT_MODEL, shipped_models)
    paths = sorted(cross_source_data.rglob("*.jpg"))[:40]
    path = next(p for p, r in zip(paths, classifier.predict_sources(paths)) if r.verdict() == UNFAMILIAR)
    app = open_page("pages/predict.py")
    app.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/jpeg")).run()
    assert not app.exception, app.exception
    assert not any("Does not look like" in e.value for e in app.error)
    boxes = [w.value for w in app.warning if w.value.startswith("**Unlike the training images**")]
    assert len(boxes) == 1 and "Best guess:" in boxes[0] and "far from every training image" in boxes[0]
    # It points to the model that carries over best to another lab, as measured beside each model.
    best, accuracy = best_on_other_lab(shipped_models)
    assert best != DEFAULT_MODEL and f"{best} carries over best to other labs' photos: it is right for {accuracy:.0%}" in boxes[0]


def test_a_batch_mostly_unlike_the_training_images_is_said_to_come_from_another_lab(
        with_data, real_data, cross_source_data, shipped_models):
    from bloodcell.abstention import UNFAMILIAR
    from bloodcell.config import DEFAULT_MODEL
    from bloodcell.inference import Classifier

    paths = sorted(cross_source_data.rglob("*.jpg"))[:40]
    results = Classifier.load(DEFAULT_MODEL, shipped_models).predict_sources(paths)
    other_lab = [p for p, r in zip(paths, results) if r.verdict() == UNFAMILIAR][:2]
    own_labs = [sorted((real_data / label).iterdir())[0] for label in ("basophil", "myeloblast")]

    def notes(files):
        app = open_page("pages/predict.py")
        app.file_uploader(key="uploads").set_value([(p.name, p.read_bytes(), "image/jpeg") for p in files]).run()
        assert not app.exception, app.exception
        return [i.value for i in app.info if "are unlike the training images" in i.value]

    other = notes(other_lab)
    assert len(other) == 1 and other[0].startswith("**2 of 2 images") and "another microscope or lab" in other[0]
    assert f"{best_on_other_lab(shipped_models)[0]} carries over best" in other[0]
    assert notes(own_labs) == []


def test_trust_page_shows_the_audit_and_examples(with_data, shipped_models):
    app = open_page("pages/trust.py")
    assert not app.exception, app.exception
    # models, label-blind baselines, counterfactual by part and by class, abstention probes
    assert len(app.dataframe) >= 5
    assert any("upper bound" in c.value for c in app.caption)
    # The baselines table has the shape baseline, in percentage points like every table here.
    baselines = next(frame.value for frame in app.dataframe if "baseline" in frame.value.columns)
    assert "cell shape" in set(baselines["baseline"])
    assert baselines["test accuracy"].between(40, 100).all()
    captions = " ".join(c for image in app.get("image") for c in image.captions)
    assert "true " in captions and "says" in captions  # example cells with heatmaps
    assert captions.count("its silhouette") == len(CLASS_NAMES)  # what the shape baseline sees
    # Every headline figure with its interval, and what the intervals do not cover.
    assert "How sure are these figures?" in [header.value for header in app.subheader]
    assert any("95% interval" in c.value and "retraining" in c.value for c in app.caption)
    # What a user with another lab's photos can do.
    assert "If your photos come from another lab" in [header.value for header in app.subheader]
    assert any("--init-from celltwin" in code.value for code in app.code)
    # The model named as carrying over best is the one its measured file says, not a name in the text.
    assert any(f"{best_on_other_lab(shipped_models)[0]} carries over best" in m.value for m in app.markdown)


def test_bad_file_is_reported_and_good_file_still_classified(with_data, real_data):
    good = sorted((real_data / "basophil").iterdir())[0]
    app = open_page("pages/predict.py")
    app.file_uploader(key="uploads").set_value([
        ("notes.jpg", b"this is a text file with a .jpg name", "image/jpeg"),
        (good.name, good.read_bytes(), "image/jpeg"),
        ("tiny.png", encode(draw_cell("basophil", size=4)), "image/png"),
    ]).run()
    assert not app.exception, app.exception
    errors = " ".join(e.value for e in app.error)
    assert "notes.jpg" in errors and "not a readable image" in errors
    assert "tiny.png" in errors and "at least" in errors
    assert len(verdicts(app)) == 1  # the good file got its verdict
    assert app.get("download_button"), "a batch offers a CSV download"
    # The summary speaks the page's language; the CSV keeps the class ids.
    summary = app.dataframe[0].value
    assert list(summary["verdict"]) == ["unreadable", "ok", "unreadable"]
    assert "not a readable image" in summary["reason"][0], "the summary says why a file was unreadable"
    assert summary["predicted_class"][1] == DISPLAY_NAMES["basophil"]
    assert 50 < summary["basophil"][1] < 100, "probabilities in percentage points, never rounded to certainty"
    assert summary["basophil"].isna()[0], "an unreadable file has no probabilities"


def test_home_warns_with_the_default_models_figure_from_a_third_lab(with_data, shipped_models):
    import json

    from bloodcell.config import DEFAULT_MODEL

    cross_source = json.loads((shipped_models / DEFAULT_MODEL / "cross_source.json").read_text())
    warning = open_page("pages/home.py").warning[0].value
    assert f"right for {cross_source['accuracy']:.0%} of {cross_source['n']} neutrophils" in warning


def test_compare_models_and_other_methods(with_data, real_data):
    path = sorted((real_data / "monocyte").iterdir())[0]
    app = open_page("pages/predict.py")
    app.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/jpeg")).run()
    compare_toggle(app).set_value(True).run()
    assert not app.exception, app.exception
    assert len(verdicts(app)) == len(SHIPPED_MODEL_NAMES)
    # Whether the models agree is said once, above them.
    agreement = [c.value for c in app.caption if "models agree" in c.value] + \
        [w.value for w in app.warning if "models disagree" in w.value]
    assert len(agreement) == 1
    method = next(s for s in app.selectbox if s.label == "Explanation")
    # Grad-CAM++ for every shipped model in one script run: the longest run in
    # the suite, so it gets more time than the rest for a busy CPU.
    method.set_value("Grad-CAM++").run(timeout=3 * TIMEOUT)
    assert not app.exception, app.exception
    assert "Grad-CAM++" in " ".join(c for i in app.get("image") for c in i.captions)


def test_predict_shows_the_cell_in_each_labs_look_and_whether_the_answer_moved(with_data, real_data):
    from bloodcell.framing import MIN_RULER_RED_CELLS, frame_photo
    from bloodcell.imaging import read_image

    path = next(p for p in sorted((real_data / "basophil").iterdir())[:20]
                if frame_photo(read_image(p)).red_cells >= MIN_RULER_RED_CELLS)
    app = open_page("pages/predict.py")
    app.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/jpeg")).run()
    assert len(verdicts(app)) == 1
    look_swap_toggle(app).set_value(True).run()
    assert not app.exception, app.exception
    captions = [c for image in app.get("image") for c in image.captions]
    assert any(c.startswith("As Munich AML would show it; scaled") for c in captions), captions
    assert any(c.startswith("As PBC Barcelona would show it") for c in captions), captions
    assert len(verdicts(app)) + sum("Does not look like" in e.value for e in app.error) == 3
    summary = [c.value for c in app.caption if c.value.startswith("Its best guess")]
    assert len(summary) == 1 and ("stays" in summary[0] or "changes with the look" in summary[0])
    # With two images, the summary table gives each one's guess in each look.
    second = sorted((real_data / "myeloblast").iterdir())[0]
    app.file_uploader(key="uploads").set_value([(path.name, path.read_bytes(), "image/jpeg"),
                                                (second.name, second.read_bytes(), "image/jpeg")]).run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert {"in_munich_aml_look", "in_pbc_barcelona_look"} <= set(table.columns)
    assert all(value in DISPLAY_NAMES.values() for value in table["in_munich_aml_look"])


def test_the_look_swap_is_off_and_says_why_without_the_looks_file(monkeypatch, tiny_models_dir):
    monkeypatch.setenv(MODELS_ENV, str(tiny_models_dir))
    app = open_page("pages/predict.py")
    assert not app.exception, app.exception
    toggle = look_swap_toggle(app)
    assert toggle.disabled and "python -m bloodcell looks" in toggle.help


def test_models_load_once_across_reruns_and_pages(with_data, real_data):
    import streamlit as st

    from pages import common

    # Start from a fresh server: earlier tests in this process filled the caches and the counter.
    st.cache_resource.clear()
    common.LOADS.clear()
    path = sorted((real_data / "erythroblast").iterdir())[0]
    app = open_page("pages/predict.py")
    app.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/jpeg")).run()
    loads_after_first = dict(common.LOADS)
    app.run()
    next(s for s in app.slider if s.label == "Heatmap opacity").set_value(0.8).run()
    app.switch_page("pages/training.py").run()
    app.switch_page("pages/predict.py").run()
    assert not app.exception
    assert all(count == 1 for count in common.LOADS.values()), common.LOADS
    assert dict(common.LOADS) == loads_after_first or set(common.LOADS) >= set(loads_after_first)


def test_damaged_model_file_is_a_clear_message(monkeypatch, tmp_path, shipped_models):
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(shipped_models / "cnn", copy / "cnn")
    with open(copy / "cnn" / "model.keras", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 16)
    monkeypatch.setenv(MODELS_ENV, str(copy))
    app = open_page("pages/predict.py")
    assert not app.exception
    assert any("could not be loaded" in e.value and "sha256" in e.value for e in app.error)


def test_sidebar_says_what_the_chosen_model_sees(with_data):
    app = open_page("pages/home.py")
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert "Sees the cell view" in captions and "(the default)" in captions
    app.sidebar.selectbox[0].set_value("cellgrey").run()
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert not app.exception and "Sees the grey cell view" in captions and "(the default)" not in captions


def test_models_are_listed_default_first_then_its_variants_then_whole_image(with_data):
    from bloodcell.config import DEFAULT_MODEL

    app = open_page("pages/home.py")
    options = list(app.sidebar.selectbox[0].options)
    assert options == [DEFAULT_MODEL, "cellpair", "cellagreepair", "cellfocus", "celltwin", "cellagree", "celltexture",
                       "cellgrey", "cellfill", "mobilenetv2", "cnn"]
    assert set(options) == set(SHIPPED_MODEL_NAMES)
    app.sidebar.selectbox[0].set_value("cellfill").run()
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert not app.exception and "Sees the filled cell view" in captions
    # The two models on the plain cell view are told apart by their training.
    app.sidebar.selectbox[0].set_value("celltexture").run()
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert not app.exception and "trained on random textures too" in captions and "(the default)" not in captions
    assert "counterfactual twins" not in captions
    app.sidebar.selectbox[0].set_value("celltwin").run()
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert not app.exception and "trained on random textures and counterfactual twins too" in captions
    default_caption = " ".join(c.value for c in open_page("pages/home.py").sidebar.caption)
    assert "random textures" not in default_caption
    # The cascade (the default) is told apart by how it hands a cell over, a pair by its members.
    assert "cellagreepair answers; where it is less than 70% sure of a cell it finds like the training images, " \
           "cellpair answers instead (the default)" in default_caption
    app.sidebar.selectbox[0].set_value("cellpair").run()
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert not app.exception and "celltwin between the labs and cellfocus within a lab." in captions


def test_in_percent_turns_named_fractions_into_points_and_leaves_the_rest():
    from pages.common import in_percent

    rows = [{"model": "a", "accuracy": 0.997, "missing": None, "count": 3},
            {"model": "b", "accuracy": None, "missing": 0.5, "count": 4}]
    assert in_percent(rows, ["accuracy", "missing"]) == [
        {"model": "a", "accuracy": pytest.approx(99.7), "missing": None, "count": 3},
        {"model": "b", "accuracy": None, "missing": 50.0, "count": 4}]
    assert rows[0]["accuracy"] == 0.997  # the input is left as it was


def test_pandas_is_loaded_before_any_page_draws_a_chart():
    """plotly reads pandas from sys.modules without importing it, so a chart drawn while
    another thread is still importing pandas meets a half-initialised module and the user
    sees a traceback (it happened in the browser benchmark). Every page imports pages.common,
    which loads pandas before anything is drawn."""
    import subprocess
    import sys

    code = "import sys, pages.common; assert 'pandas' in sys.modules, 'pages.common did not load pandas'"
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=120)


def test_every_shipped_model_has_a_place_in_the_lists_and_a_note_on_the_about_page():
    """A model added to the shipped ones without its place in MODEL_ORDER would sort last, and without
    a note the About page would show its card's description, written for the command line."""
    import ast

    from pages.common import MODEL_ORDER

    assert set(SHIPPED_MODEL_NAMES) <= set(MODEL_ORDER)
    about = ast.parse((PROJECT_ROOT / "pages" / "about.py").read_text())
    notes = next(node.value for node in ast.walk(about) if isinstance(node, ast.Assign)
                 and any(getattr(target, "id", None) == "MODEL_NOTES" for target in node.targets))
    assert set(SHIPPED_MODEL_NAMES) == set(ast.literal_eval(notes))


def test_predict_raises_a_second_opinion_where_the_model_for_other_labs_contradicts(with_data, real_data,
                                                                                    cross_source_data,
                                                                                    shipped_models):
    """A neutrophil from another lab that cellpair calls a monocyte without a flag, and the model for
    other labs' photos calls a neutrophil: the page says so beside the verdict; on a training-lab cell
    both read alike, and nothing is added."""
    from bloodcell.service import SECOND_OPINION

    assert SECOND_OPINION == ("cellpair", best_on_other_lab(shipped_models)[0]), \
        "the second opinion quoted is cellpair checked by the best model for other labs"
    app = open_page("pages/predict.py")
    app.sidebar.selectbox[0].set_value(SECOND_OPINION[0]).run()
    for path, expected in ((sorted((real_data / "myeloblast").iterdir())[0], 0),
                           (cross_source_data / "seg_neutrophil" / "PBC_SNE_106989.jpg", 1)):
        app.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/jpeg")).run()
        assert not app.exception, app.exception
        second = [w.value for w in app.warning if "Second opinion" in w.value]
        assert len(second) == expected, (path.name, second)
    assert DISPLAY_NAMES["monocyte"] in " ".join(verdicts(app)), "cellpair's own verdict stays as it is"
    assert f"Second opinion: {DISPLAY_NAMES['seg_neutrophil']}" in second[0] and SECOND_OPINION[1] in second[0]
    # With several images, the summary gives the second opinion in a column of its own.
    cells = [sorted((real_data / "myeloblast").iterdir())[0],
             cross_source_data / "seg_neutrophil" / "PBC_SNE_106989.jpg"]
    app.file_uploader(key="uploads").set_value([(p.name, p.read_bytes(), "image/jpeg") for p in cells]).run()
    assert not app.exception, app.exception
    summary = app.dataframe[0].value
    assert list(summary["second_opinion"]) == ["", DISPLAY_NAMES["seg_neutrophil"]]
    # Comparing shows every model anyway: no second opinion on top.
    compare_toggle(app).set_value(True).run()
    assert not app.exception, app.exception
    assert not [w.value for w in app.warning if "Second opinion" in w.value]


def test_the_default_cascade_says_when_its_second_model_answered(with_data, real_data):
    """MO_707494: cellagreepair is unsure of this familiar-looking monocyte, so the default cascade gives
    cellpair's answer, and the verdict says who answered and why; a cell it is sure of says nothing more."""
    from bloodcell.config import DEFAULT_MODEL, ROUTED_MODELS

    primary, fallback = ROUTED_MODELS[DEFAULT_MODEL]
    app = open_page("pages/predict.py")
    for path, handed_over in ((real_data / "monocyte" / "MO_707494.jpg", True),
                              (sorted((real_data / "myeloblast").iterdir())[0], False)):
        app.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/jpeg")).run()
        assert not app.exception, app.exception
        notes = [c.value for c in app.caption if c.value.startswith("Answered by")]
        if handed_over:
            assert DISPLAY_NAMES["monocyte"] in " ".join(verdicts(app))
            assert len(notes) == 1 and notes[0].startswith(f"Answered by {fallback}: {primary}, which "
                                                           f"{DEFAULT_MODEL} asks first, was less than 70% sure")
        else:
            assert not notes, notes
    # With several images the results table names the model that gave each answer.
    cells = [real_data / "monocyte" / "MO_707494.jpg", sorted((real_data / "myeloblast").iterdir())[0]]
    app.file_uploader(key="uploads").set_value([(p.name, p.read_bytes(), "image/jpeg") for p in cells]).run()
    assert not app.exception, app.exception
    assert list(app.dataframe[0].value["answered_by"]) == [fallback, primary]
