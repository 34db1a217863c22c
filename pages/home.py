"""Home: what the app does, for whom, the five classes, and where to go next."""

import streamlit as st

from bloodcell.cells import DESCRIPTIONS, DISPLAY_NAMES
from bloodcell.config import CLASS_NAMES, DEFAULT_MODEL
from pages.common import load_model_files, models_dir, page_setup


def lab_warning() -> str:
    """The caveat every visitor should read first, with the default model's own figure from a third lab."""
    words = ("A research and teaching tool, not a diagnostic device. The training images come from two "
             "labs, and a model can learn the lab instead of the cell.")
    cross_source = load_model_files(DEFAULT_MODEL, str(models_dir()))["cross_source"]
    if cross_source:
        words += (f" The default model, {DEFAULT_MODEL}, sees only the cell and is right for "
                  f"{cross_source['accuracy']:.0%} of {cross_source['n']} neutrophils photographed in Barcelona "
                  "(all its training neutrophils are from Munich), and no other lab's photos were measured: "
                  "expect mistakes on cells from your own microscope.")
    return words + " The Trust page shows how far each model reads the lab, and how it was measured."


page_setup()
st.title("bloodcell")
st.markdown(
    "Classify single **white-blood-cell** microscope images into five classes and see "
    "**where the model looked** when it decided. Built for students and teachers of "
    "haematology and of deep learning: every prediction comes with calibrated probabilities "
    "and a heatmap, so you can judge whether the model looked at the cell or at something else."
)

st.warning(lab_warning(), icon=":material/science:")

st.subheader("The five classes")
for row_start in range(0, len(CLASS_NAMES), 3):
    for column, name in zip(st.columns(3), CLASS_NAMES[row_start:row_start + 3]):
        notes = DESCRIPTIONS[name]
        with column.container(border=True):
            st.markdown(f"**{DISPLAY_NAMES[name]}**  \n{notes['summary']}")
            st.markdown(
                f"- *Nucleus:* {notes['nucleus']}\n"
                f"- *Cytoplasm:* {notes['cytoplasm']}\n"
                f"- *Look-alikes:* {notes['look_alikes']}"
            )

st.subheader("Where next")
first, second, third, fourth = st.columns(4)
first.page_link("pages/predict.py", label="Predict: classify your own images", icon=":material/biotech:")
second.page_link("pages/trust.py", label="Trust: is the model right for the right reason?",
                 icon=":material/verified_user:")
third.page_link("pages/dataset.py", label="Dataset: browse the training images", icon=":material/photo_library:")
fourth.page_link("pages/training.py", label="Training: curves and confusion matrices", icon=":material/monitoring:")
