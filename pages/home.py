"""Home: what the app does, for whom, the five classes, and where to go next."""

import streamlit as st

from bloodcell.cells import DESCRIPTIONS, DISPLAY_NAMES
from bloodcell.config import CLASS_NAMES
from pages.common import page_setup

page_setup()
st.title("bloodcell")
st.markdown(
    "Classify single **white-blood-cell** microscope images into five classes and see "
    "**where the model looked** when it decided. Built for students and teachers of "
    "haematology and of deep learning: every prediction comes with calibrated probabilities "
    "and a heatmap, so you can judge whether the model looked at the cell or at something else."
)
st.warning(
    "A research and teaching tool, not a diagnostic device. The training images come from two "
    "labs, and the models can learn the lab instead of the cell; the About page explains.",
    icon=":material/science:",
)

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
left, middle, right = st.columns(3)
left.page_link("pages/predict.py", label="Predict: classify your own images", icon=":material/biotech:")
middle.page_link("pages/dataset.py", label="Dataset: browse the training images", icon=":material/photo_library:")
right.page_link("pages/training.py", label="Training: curves and confusion matrices", icon=":material/monitoring:")
