"""Predict: classify uploaded, photographed or sample images and show where the model looked."""

import random
from pathlib import Path

import streamlit as st
from PIL import Image

from bloodcell.abstention import NOT_A_CELL, NOT_CONFIDENT, OK, UNFAMILIAR
from bloodcell.cells import DISPLAY_NAMES
from bloodcell.charts import counts_figure, probability_figure, probability_points, probability_text
from bloodcell.config import CLASS_NAMES, SHIPPED_MODEL_NAMES
from bloodcell.errors import BloodcellError, ImageReadError
from bloodcell.explain import GRADCAM, METHODS, overlay
from bloodcell.imaging import read_image
from bloodcell.lookswap import look_column
from bloodcell.redcells import TRAINING_RED_CELL_RANGE, magnification_note
from bloodcell.service import (DEFAULT_UNSURE_THRESHOLD, FLAG_COUNTS, SECOND_OPINION,
                               SECOND_OPINION_CATCHES_ON_OTHER_LAB, SECOND_OPINION_DIFFERS_ON_OTHER_LAB,
                               SECOND_OPINION_DIFFERS_ON_TEST,
                               SHIPPED_MODELS_AGREE_ON_OTHER_LAB, LazyPhoto, SHIPPED_MODELS_AGREE_ON_TEST,
                               differential_count, look_swap, model_answers, results_rows, rows_to_csv,
                               second_opinion_class)
from pages.common import (MISSING, best_for_other_labs, carry_over_words, data_dir, in_percent,
                          load_dataset_overview, load_look_numbers, load_model_files, load_service, model_names,
                          models_dir, page_setup, percent_column, selected_model, service_or_error)

UPLOAD_TYPES = ["jpg", "jpeg", "png", "bmp", "tif", "tiff"]
PREDICTED = "the predicted class"
DISPLAY_SIDE = 384
# Models per row when comparing: with six or more side by side the verdicts broke mid-word on a laptop screen.
COMPARE_PER_ROW = 3
# Above this share of a batch called unlike the training images, the summary says the photos may come
# from another lab. Measured (benchmarks/model_agreement.py): on the test split no shipped model calls
# more than 1.2% of the cells so; on the other lab's neutrophils the pairs call 38% and 46%.
OTHER_LAB_SHARE = 0.2
FLAG_WORDS = {NOT_CONFIDENT: "not confident", UNFAMILIAR: "unlike the training images",
              NOT_A_CELL: "not a single blood cell"}
OOD_HELP = ("How far the image's features lie from every training cell's; above the model's limit a "
            "single cell is flagged as unlike the training images.")
RED_CELL_HELP = ("Red cells' diameter over the photo's shorter side: {:.0%}–{:.0%} in the training photos."
                 .format(*TRAINING_RED_CELL_RANGE))
ZOOM_HELP = ("1.00×: the models saw the photo as it is. Above 1: its red cells showed a lower magnification "
             "than the training photos', so the models saw the square around its white cell that much closer.")
LOOK_SWAP_HELP = ("Each cell is shown again as each training lab would have photographed it: its stain, "
                  "field colour, magnification (measured by its red cells) and sharpness swapped for that "
                  "lab's. A model that goes by the cell keeps its answer; one that goes by the lab's look "
                  "changes it. Costs two more predictions per image.")
METHOD_HELP = ("Grad-CAM comes with the prediction at no extra cost. Grad-CAM++, Score-CAM and "
               "SmoothGrad (pixel-level gradients averaged over noisy copies) need TensorFlow: the "
               "first one asked for takes a few seconds to load, and each takes longer per image.")


# Caches are shared by all sessions and bounded so memory stays flat under load.
@st.cache_data(max_entries=120, show_spinner=False)
def analyse(model: str, folder: str, name: str, data: bytes, method: str, class_index: int | None,
            _photo: LazyPhoto):
    """Prediction and heatmap for one image; cached so sliders do not recompute them.

    `_photo` (left out of the cache key) is `data` decoded once for all the
    models compared on it, and only if one of them is not cached yet.
    """
    return load_service(model, folder).analyse(name, _photo, method, class_index)


# Each entry holds two rendered photos (about 1.3 MB): fewer kept than analyses.
@st.cache_data(max_entries=20, show_spinner=False)
def analyse_in_looks(model: str, folder: str, name: str, data: bytes, _photo: LazyPhoto):
    """The image in each training lab's look, and the model's answer on each (bloodcell.lookswap).

    Only the verdicts are shown, so the heatmap is Grad-CAM's, which comes with the prediction.
    """
    return look_swap(load_service(model, folder), name, _photo, load_look_numbers(folder), GRADCAM)


@st.cache_data(max_entries=40, show_spinner=False)
def display_image(data: bytes):
    try:
        image = read_image(data)
    except ImageReadError:
        return None
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    return image


def collect_inputs() -> list[tuple[str, bytes]]:
    upload, camera, sample = st.tabs(["Upload images", "Camera", "Sample from the dataset"])
    items: list[tuple[str, bytes]] = []
    with upload:
        files = st.file_uploader("Cell images (one cell per image)", type=UPLOAD_TYPES,
                                 accept_multiple_files=True, key="uploads")
        items += [(f.name, f.getvalue()) for f in files or []]
    with camera:
        if st.toggle("Use the camera", key="use_camera"):
            photo = st.camera_input("Photograph a cell", key="camera")
            if photo is not None:
                items.append(("camera photo", photo.getvalue()))
    with sample:
        dataset = load_dataset_overview(str(data_dir()))
        if dataset is None:
            st.info("No dataset found; set `BLOODCELL_DATA` to pick samples from it.")
        else:
            left, right = st.columns([2, 1])
            label = left.selectbox("Class", list(dataset.files), format_func=DISPLAY_NAMES.get, key="sample_class")
            if right.button("Pick a random cell", icon=":material/casino:", width="stretch"):
                st.session_state["sample_path"] = str(random.choice(dataset.files[label]))
            if st.session_state.get("sample_path"):
                path = Path(st.session_state["sample_path"])
                st.caption(f"Sample: `{path.parent.name}/{path.name}` (true class: {DISPLAY_NAMES.get(path.parent.name, '?')})")
                items.append((f"{path.parent.name}/{path.name}", path.read_bytes()))
    return items


def settings() -> dict:
    with st.container(border=True):
        a, b, c, d = st.columns(4)
        method = a.selectbox("Explanation", METHODS, index=METHODS.index(GRADCAM), help=METHOD_HELP)
        target = b.selectbox("Explain", [PREDICTED, *CLASS_NAMES],
                             format_func=lambda v: v if v == PREDICTED else DISPLAY_NAMES[v],
                             help="Which class the heatmap explains: the prediction, or any other class.")
        opacity = c.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05)
        threshold = d.slider("Not confident below", 0.0, 1.0, DEFAULT_UNSURE_THRESHOLD, 0.05,
                             help="Below this calibrated probability the app gives no class. Images "
                                  "far from all training images are flagged whatever the probability.")
        others = [n for n in model_names() if n != selected_model()]
        compare = st.toggle(f"Compare with {', '.join(others)}", disabled=not others) if others else False
        looks = load_look_numbers(str(models_dir()))
        swap = st.toggle(f"Show each cell in both training labs' looks ({selected_model()})", key="look_swap",
                         disabled=isinstance(looks, str),
                         help=looks if isinstance(looks, str) else LOOK_SWAP_HELP)
    return {"method": method, "class_index": None if target == PREDICTED else CLASS_NAMES.index(target),
            "opacity": opacity, "threshold": threshold, "compare": compare, "look_swap": swap}


def show_verdict(result, threshold: float, key: str) -> None:
    """The verdict box; its container key (CSS class st-key-verdict_…) lets browser tests find it."""
    with st.container(key=f"verdict_{key}"):
        verdict_box(result, threshold)
        handed_over = handed_over_words(result)
        if handed_over:
            st.caption(handed_over)


def handed_over_words(result) -> str:
    """For a cascade's answer that its fallback gave, who answered and why ("" otherwise)."""
    if not getattr(result, "answered_by", None):
        return ""
    route = (load_model_files(result.model, str(models_dir()))["card"] or {}).get("route") or {}
    primary = route.get("primary", {}).get("model")
    if result.answered_by == primary or not primary:
        return ""
    return (f"Answered by {result.answered_by}: {primary}, which {result.model} asks first, was less than "
            f"{route.get('min_confidence', DEFAULT_UNSURE_THRESHOLD):.0%} sure of this cell, and the cell looks "
            f"like the training images, where {result.answered_by} fits closest.")


def show_other_lab_note(counts: dict[str, int], model: str) -> None:
    """When many images of a batch are unlike the training images, say what that most likely means."""
    readable = sum(counts.values()) - counts.get("unreadable", 0)
    unfamiliar = counts.get(FLAG_COUNTS[UNFAMILIAR], 0)
    if readable < 2 or unfamiliar <= OTHER_LAB_SHARE * readable:
        return
    best = best_for_other_labs()
    advice = (f" {carry_over_words(best)}: choose it in the sidebar or compare the models."
              if best and best[0] != model else "")
    st.info(f"**{unfamiliar} of {readable} images are unlike the training images** for {model}: these photos "
            f"most likely come from another microscope or lab than the two the models learnt from.{advice}",
            icon=":material/travel_explore:")


def verdict_box(result, threshold: float) -> None:
    label = DISPLAY_NAMES[result.predicted_class]
    verdict = result.verdict(threshold)
    if verdict == NOT_A_CELL:
        st.error(f"**Does not look like a single blood-cell image** ({result.reason(threshold)}). The model would "
                 f"say {label} ({probability_text(result.confidence, 0)}); do not trust it.", icon=":material/block:")
    elif verdict == UNFAMILIAR:
        best = best_for_other_labs()
        hint = f" ({carry_over_words(best)})" if best and best[0] != result.model else ""
        st.warning(f"**Unlike the training images**: one cell, but {result.reason(threshold)}. Best guess: {label} "
                   f"({probability_text(result.confidence, 0)}). The models learnt from two labs' photos and may not "
                   f"carry over to this one: compare the models{hint} and show the cell in both labs' looks.",
                   icon=":material/travel_explore:")
    elif verdict == NOT_CONFIDENT:
        st.warning(f"**Not confident.** Best guess: {label} at {result.confidence:.0%}, "
                   f"below the {threshold:.0%} threshold.", icon=":material/help:")
    else:
        st.success(f"**{label}** ({probability_text(result.confidence)})", icon=":material/check_circle:")


def second_opinion(name: str, data: bytes, photo: LazyPhoto, result, options: dict):
    """The checking model's analysis of the image, when `result` is an unflagged answer of the model it
    checks (SECOND_OPINION) and the models are not compared anyway."""
    checked, checking = SECOND_OPINION
    if result.model != checked or options["compare"] or result.verdict(options["threshold"]) != OK or \
            checking not in model_names():
        return None
    try:
        return analyse(checking, str(models_dir()), name, data, GRADCAM, None, photo)
    except BloodcellError:
        return None  # a second opinion that cannot load is left out; the model chosen still answers


def show_second_opinion(result, second, threshold: float) -> None:
    """A confident answer that the model for other labs' photos contradicts: say so, with how often that happens."""
    if not second_opinion_class(result, second, threshold):
        return
    test_differs, test_images = SECOND_OPINION_DIFFERS_ON_TEST
    other_differs, other_images = SECOND_OPINION_DIFFERS_ON_OTHER_LAB
    caught, wrong = SECOND_OPINION_CATCHES_ON_OTHER_LAB
    on_test = (f"never contradicted {result.model} on the {test_images}" if not test_differs else
               f"contradicted {result.model} on {test_differs} of the {test_images}")
    st.warning(f"**Second opinion: {DISPLAY_NAMES[second.predicted_class]}** "
               f"({probability_text(second.confidence, 0)}) from {second.model}, the model that carries over best "
               f"to other labs' photos. It {on_test} test images from the two training labs, but did on "
               f"{other_differs} of {other_images} neutrophils from another lab, catching {caught} of the {wrong} "
               f"{result.model} got wrong without a flag. If this photo comes from another microscope or lab, "
               "trust the second opinion.", icon=":material/rate_review:")


def heatmap_image(image, result, opacity: float):
    """The heatmap over the photo (over the cell's square for a cell-view model)."""
    return overlay(image, result.heatmap, opacity, DISPLAY_SIDE, box=result.view_box)


def show_result(image, result, options: dict, key: str):
    """The input, its heatmap, the verdict and the probabilities; returns the place kept under the verdict
    for a second opinion, which is drawn after the verdict so that the verdict never waits for it."""
    original, heat, verdict = st.columns([1, 1, 1.4])
    if result.model_view is not None:
        original.image(image, caption="input", width="stretch")
        original.image(overlay(Image.fromarray(result.model_view), result.heatmap, options["opacity"]),
                       caption=f"{result.model} sees {result.view_description}", width="stretch")
    else:
        original.image(image, caption=f"{result.model}: input", width="stretch")
    explained = DISPLAY_NAMES[CLASS_NAMES[result.class_index]]
    heat.image(heatmap_image(image, result, options["opacity"]),
               caption=f"{result.method} for {explained}", width="stretch")
    with verdict:
        show_verdict(result, options["threshold"], key)
        opinion = st.empty()
        note = magnification_note(result.red_cell_size, result.zoom)
        if note:
            st.caption(note)
        st.plotly_chart(probability_figure(result.probabilities, int(result.probabilities.argmax()),
                                           options["threshold"]),
                        width="stretch", key=key)
    return opinion


def answer_words(answer: str) -> str:
    """A class in bold, or what the flag means."""
    return FLAG_WORDS.get(answer) or f"**{DISPLAY_NAMES[answer]}**"


def show_agreement(results, threshold: float) -> None:
    """Whether the models agree: they seldom disagree on cells like the training labs'."""
    answers = model_answers(results, threshold)
    if len(answers) == 1:
        answer, models = next(iter(answers.items()))
        st.caption(f"All {len(models)} models agree: {answer_words(answer)}.")
    elif answers:
        agreeing, images = SHIPPED_MODELS_AGREE_ON_OTHER_LAB
        split = "; ".join(f"{', '.join(models)}: {answer_words(answer)}" for answer, models in answers.items())
        st.warning(f"**The models disagree.** {split}. The {len(SHIPPED_MODEL_NAMES)} shipped models give the "
                   f"same answer for {SHIPPED_MODELS_AGREE_ON_TEST:.0%} of the test images from the two training "
                   "labs, and for "
                   f"{agreeing} of {images} neutrophils from another lab: disagreement suggests a cell unlike "
                   "the training images, so trust no single verdict here and compare where each model looked.",
                   icon=":material/call_split:")


def show_comparison(image, results, options: dict, key: str) -> None:
    """The input, then the models in rows of COMPARE_PER_ROW: heatmap, verdict and probabilities."""
    show_agreement(results, options["threshold"])
    for start in range(0, len(results), COMPARE_PER_ROW):
        columns = st.columns([1] + [1.2] * COMPARE_PER_ROW)
        if start == 0:
            columns[0].image(image, caption="input", width="stretch")
        for column, result in zip(columns[1:], results[start:start + COMPARE_PER_ROW]):
            show_model_column(column, image, result, options, key)


def show_model_column(column, image, result, options: dict, key: str) -> None:
    """One model's heatmap, verdict and probabilities in a comparison."""
    with column:
        explained = DISPLAY_NAMES[CLASS_NAMES[result.class_index]]
        st.image(heatmap_image(image, result, options["opacity"]),
                 caption=f"{result.model}: {result.method} for {explained}", width="stretch")
        show_verdict(result, options["threshold"], f"{key}_{result.model}")
        st.plotly_chart(probability_figure(result.probabilities, int(result.probabilities.argmax()),
                                           options["threshold"], short_names=True), width="stretch",
                        key=f"{key}_{result.model}")


def show_look_swap(swap, original, options: dict, key: str) -> None:
    """The photo in each lab's look with the model's verdict, then whether the answer moved."""
    st.markdown(f"**{original.model} on this cell in each training lab's look**")
    if swap.problem is not None:
        st.caption(f"No look swap: {swap.problem}.")
        return
    *looks, words = st.columns([1] * len(swap.renderings) + [1.4])
    for column, rendering, result in zip(looks, swap.renderings, swap.analyses):
        with column:
            scale = (f"scaled {rendering.scale:.2f}× to that lab's magnification (red cells as the ruler)"
                     if rendering.ruler else "magnification kept: too few red cells to measure it by")
            st.image(rendering.image, caption=f"As {rendering.lab} would show it; {scale}", width="stretch")
            if result.ok:
                show_verdict(result, options["threshold"], f"{key}_{rendering.lab.replace(' ', '_')}")
    words.caption(swap.summary(original))


def show_summary(rows: list[dict]) -> None:
    """The CSV's rows, with class names and percentages a reader expects; an unreadable file's cells stay empty."""
    numbers = load_look_numbers(str(models_dir()))
    lab_of = {} if isinstance(numbers, str) else {look_column(lab): lab for lab in numbers}
    looks = [column for column in lab_of if column in rows[0]]
    shown = in_percent([{**row, **{column: DISPLAY_NAMES.get(row[column], "")
                                   for column in ("predicted_class", "second_opinion", *looks) if column in row},
                         **{column: probability_points(row[column])
                            for column in ("confidence", *CLASS_NAMES) if row[column] is not None}}
                        for row in rows], ["red_cell_size"])
    columns = {
        "predicted_class": st.column_config.TextColumn("predicted class"),
        "confidence": st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.1f%%"),
        **{label: percent_column(1, label=DISPLAY_NAMES[label]) for label in CLASS_NAMES},
        "ood_score": st.column_config.NumberColumn("outlier score", format="%.1f", help=OOD_HELP),
        "red_cell_size": percent_column(0, label="red cell size", help=RED_CELL_HELP),
        "zoom": st.column_config.NumberColumn("zoom", format="%.2f×", help=ZOOM_HELP),
        "second_opinion": st.column_config.TextColumn(
            "second opinion", help=f"{SECOND_OPINION[1]}'s class where it answers without a flag and contradicts "
                                   f"{SECOND_OPINION[0]}'s unflagged answer (with {SECOND_OPINION[0]} only)"),
        "answered_by": st.column_config.TextColumn(
            "answered by", help="Which of the cascade's two models gave the answer: the second answers where the "
                                "first is unsure of a cell that looks like the training images"),
        **{column: st.column_config.TextColumn(f"in {lab_of[column]}'s look",
                                               help="Best guess with the cell shown in that lab's look")
           for column in looks},
    }
    # The guesses in each look sit beside the guess, not past the probabilities.
    first = list(rows[0])[:list(rows[0]).index("predicted_class") + 1]
    beside = [column for column in ("answered_by", "second_opinion", *looks) if column in rows[0]]
    order = first + beside + [column for column in rows[0] if column not in first and column not in beside]
    st.dataframe(shown, hide_index=True, width="stretch", column_config=columns, column_order=order,
                 placeholder=MISSING)


page_setup()
st.title("Predict")
st.caption("Upload single-cell images, take a photo, or pick a sample. Each image gets its class, "
           "calibrated probabilities and a heatmap of where the model looked.")
model = selected_model()
if model is None:
    st.info("No trained model found. Train one with `python -m bloodcell train --model cnn`.")
    st.stop()
if service_or_error(model) is None:
    st.stop()

inputs = collect_inputs()
options = settings()
models = [model] + ([n for n in model_names() if n != model] if options["compare"] else [])
services = {name: service_or_error(name) for name in models}
models = [name for name in models if services[name] is not None]
if not inputs:
    st.info("Add an image above to see a prediction.", icon=":material/upload:")
    st.stop()

# Per analysis: the look swap and the second opinion, where one was shown or asked.
analyses, swaps, seconds = [], [], []
with st.spinner("Classifying…"):
    for position, (name, data) in enumerate(inputs):
        with st.container(border=True, key=f"result_{position}"):
            st.markdown(f"**{name}**")
            photo = LazyPhoto(data)
            results = [analyse(m, str(models_dir()), name, data, options["method"], options["class_index"], photo)
                       for m in models]
            analyses += results
            swaps += [None] * len(results)
            seconds += [None] * len(results)
            if not results[0].ok:
                st.error(f"Could not use **{name}**: {results[0].error}.", icon=":material/broken_image:")
                continue
            image = display_image(data)
            if len(results) == 1:
                opinion = show_result(image, results[0], options, key=f"bars_{position}")
                second = second_opinion(name, data, photo, results[0], options)
                with opinion.container():
                    show_second_opinion(results[0], second, options["threshold"])
                seconds[-1] = second
            else:
                show_comparison(image, results, options, key=f"bars_{position}")
            if options["look_swap"]:
                swap = analyse_in_looks(model, str(models_dir()), name, data, photo)
                show_look_swap(swap, results[0], options, key=f"looks_{position}")
                swaps[-len(results)] = swap

if len(inputs) > 1:
    st.subheader(f"Summary of {len(inputs)} images")
    rows = results_rows(analyses, options["threshold"], swaps,
                        seconds if any(second is not None for second in seconds) else None)
    primary = [a for a in analyses if a.model == model]
    counts = differential_count(primary, options["threshold"])
    show_other_lab_note(counts, model)
    show_summary(rows)
    st.plotly_chart(counts_figure(counts, f"Differential count ({model})"), width="stretch")
    st.download_button("Download results (CSV)", rows_to_csv(rows), "bloodcell-predictions.csv",
                       "text/csv", icon=":material/download:")
