"""About: what the models are, where the data comes from, and their limits."""

import streamlit as st

from pages.common import (MISSING, combined_models, in_percent, load_model_files, model_names, models_dir, page_setup,
                          pair_members, percent_column, training_runs)

CROSS_SOURCE_COLUMN = "Barcelona neutrophils"
TEST_COLUMN = "test accuracy"
# Rows tall enough for a note of four lines.
NOTE_ROW_HEIGHT = 100
HEADER_HEIGHT = 38
# What each shipped model is, and how to read its figures: what the files do not say.
MODEL_NOTES = {
    "cellroute": "The default. cellagreepair answers; where it is unsure of a cell that looks like the training "
                 "images, cellpair answers instead. Meets all four targets: 99.56% on the test split, nine in "
                 "ten of the Barcelona neutrophils (its rule was written with both pairs' figures there in view).",
    "cellpair": "celltwin says which lab's group of classes a cell belongs to, cellfocus which class inside the "
                "group: only between the groups can the lab's look be a shortcut. The default before cellroute: "
                "meets the test, flag and counterfactual targets; short of 90% on the Barcelona neutrophils.",
    "cellagreepair": "For photos from other labs. cellagree says which lab's group of classes a cell belongs to, "
                     "cellfocus and cellagree together which class inside the group. Right for about nine in ten "
                     "of the Barcelona neutrophils, but short of the test target alone (99.11%); cellroute asks "
                     "it first.",
    "cellfocus": "Sees only the cell: cropped, stain-normalised, background removed. The default before cellpair; "
                 "reads some of the lab still (its counterfactual drop is 3 points).",
    "celltwin": "celltexture trained on counterfactual twins too (the cell shown as the other lab would), "
                "so its counterfactual figure is no evidence. Twins were pursued for their early figures on "
                "the Barcelona neutrophils; three runs of this recipe scored 79.3, 75.7 and 60.3% there: "
                "expect nearer 70%.",
    "cellagree": "celltwin's recipe, told to make the same call on each cell and on its twin, weighted 12; "
                 "two runs averaged into one network. The between-the-labs half of cellagreepair; on its own, "
                 "test 98.81%.",
    "celltexture": "cellfocus trained on random textures too, so that a scanner's or a stain's texture is "
                   "not worth learning. Pursued for its first runs' figures on the Barcelona neutrophils; "
                   "five runs averaged 56.6% there, against 34–46% for two runs of each earlier recipe.",
    "cellgrey": "The cell view in grey levels, its finest detail softened: neither colour nor the sharper "
                "scanner can give the lab away.",
    "cellfill": "A view the cell always fills, so its size in the photo (the lab's magnification) is gone.",
    "mobilenetv2": "The whole photo, background included: it reads the lab.",
    "cnn": "A small network trained from scratch on the whole photo: it reads the lab.",
}


def model_row(name: str) -> dict:
    files = load_model_files(name, str(models_dir()))
    return {"model": name, "in short": MODEL_NOTES.get(name, (files["card"] or {}).get("description", "")),
            TEST_COLUMN: (files["metrics"] or {}).get("accuracy"),
            CROSS_SOURCE_COLUMN: (files["cross_source"] or {}).get("accuracy")}


page_setup()
st.title("About")

st.header("Limits")
st.markdown(
    "- **Not a diagnostic device.** bloodcell is for research and teaching; never use it to make "
    "or support a clinical decision.\n"
    "- **Two labs, five classes.** Basophils, erythroblasts and monocytes were photographed in one "
    "lab (Barcelona, CellaVision DM96), myeloblasts and segmented neutrophils in another (Munich). "
    "Stain, background, magnification and sharpness differ, so a model can score high by "
    "recognising the lab instead of the cell. The check: 300 segmented neutrophils photographed "
    "in the Barcelona lab, used for evaluation only (the table below; the Trust page has the full "
    "audit). The default, cellroute, is right for about nine in ten (91%), as is cellagreepair (92%), which it "
    "asks first; cellpair, which answers where cellagreepair is unsure of a familiar-looking cell, for about "
    "four in five. The default's rule was written with these figures in view, so they are somewhat optimistic, "
    "and 300 neutrophils from one lab are not every lab: compare the models on the Predict page, and show "
    "each cell in both training labs' looks there to see whether the look moves the answer.\n"
    "- **Single cells only.** The models were trained on crops centred on one white cell. An "
    "image without one centred stained cell (a whole smear, a photo of anything else, a blank "
    "slide) is flagged as not a single blood-cell image. A single cell whose features lie far from "
    "every training image is flagged as unlike the training images, with the model's best guess: "
    "many photos from another lab land here. The first check reads the pixels; the second is a "
    "distance in the model's feature space, so an unusual cell can be flagged and an odd image can "
    "slip through.\n"
    "- **One magnification.** A cell photographed at a lower magnification looks smaller, and "
    "smaller reads as another cell type. When a photo's red cells show it clearly (three or more "
    "measured), every model sees it cropped around its white cell to the training magnification; "
    "without such a ruler it is shown as it is, and most models then do much worse (cellfill, "
    "whose view follows the cell, much less). A photo at a higher magnification is never widened; "
    "the cell-view models kept 95–99% on test cells shown twice as close, the whole-image models "
    "82–89%.\n"
    "- **Calibrated on the validation split.** Probabilities are temperature-scaled; on images unlike "
    "the training set they can still be confidently wrong."
)

rows = [model_row(name) for name in model_names()]
# Every row in view: a table that scrolls inside a scrolling page hides the models at its end.
st.dataframe(in_percent(rows, (TEST_COLUMN, CROSS_SOURCE_COLUMN)), hide_index=True, width="stretch",
             placeholder=MISSING, row_height=NOTE_ROW_HEIGHT, height=HEADER_HEIGHT + NOTE_ROW_HEIGHT * len(rows),
             column_config={"in short": st.column_config.TextColumn(width="large"),
                            TEST_COLUMN: percent_column(2, width="small"),
                            CROSS_SOURCE_COLUMN: percent_column(1, width="small")})

st.header("Models")
for name in model_names():
    card = load_model_files(name, str(models_dir()))["card"] or {}
    with st.expander(f"{name}: {card.get('description', '')}"):
        env = card.get("environment", {})
        if card.get("pair"):
            st.markdown(
                f"- Combines {pair_members(card)}: the probability of each lab's group of classes from the "
                "model between the labs, of each class inside its group from those within a lab. "
                "No weights of its own; a temperature and an outlier check fitted like any model's.\n"
                f"- Test accuracy {card.get('test_metrics', {}).get('accuracy', 0):.2%}\n"
                f"- What it sees: {card.get('input', 'the whole image')}")
            continue
        if card.get("route"):
            st.markdown(
                f"- A cascade: {combined_models(card)}. No weights of its own; a temperature and an outlier "
                "check fitted like any model's.\n"
                f"- Test accuracy {card.get('test_metrics', {}).get('accuracy', 0):.2%}\n"
                f"- What it sees: {card.get('input', 'the whole image')}")
            continue
        st.markdown(
            f"- Input: {card.get('input_size')} px RGB; {card.get('parameters', 0):,} parameters; "
            f"file {card.get('file_size_bytes', 0) / 2**20:.1f} MB (sha256 `{str(card.get('file_sha256'))[:16]}…`)\n"
            f"- Trained {training_runs(card)} in "
            f"{card.get('training_seconds', 0) / 60:.1f} min on {env.get('cpu', '?')} "
            f"({env.get('cpu_count', '?')} cores), TensorFlow {env.get('tensorflow', '?')}, Keras {env.get('keras', '?')}\n"
            f"- Test accuracy {card.get('test_metrics', {}).get('accuracy', 0):.2%}\n"
            f"- What it sees: {card.get('input', 'the whole image')}"
        )
        if card.get("shortcut_measures"):
            st.markdown("**Against the two-lab shortcut**\n" + "\n".join(
                f"- *{key}:* {text}" for key, text in card["shortcut_measures"].items()))
        st.json(card.get("hyperparameters", {}), expanded=False)

st.header("Data, citations and licences")
st.markdown(
    "The images are those of the public Kaggle dataset *Blood Cell Images for Cancer Detection*, "
    "which combines two research datasets. They are not part of this app's code and are not "
    "redistributed by it.\n\n"
    "- **PBC dataset** (basophil, erythroblast, monocyte): Acevedo A., Merino A., Alférez S., "
    "Molina Á., Boldú L., Rodellar J. *A dataset of microscopic peripheral blood cell images for "
    "development of automatic recognition systems.* Data in Brief 30 (2020) 105474. Mendeley Data, "
    "licence CC BY 4.0.\n"
    "- **AML-Cytomorphology_LMU** (myeloblast, seg_neutrophil): Matek C., Schwarz S., Spiekermann K., "
    "Marr C. *Human-level recognition of blast cells in acute myeloid leukaemia with convolutional "
    "neural networks.* Nature Machine Intelligence 1 (2019) 538–544. The Cancer Imaging Archive, "
    "licence CC BY 3.0.\n"
    "- **MobileNetV2**: Sandler M. et al., *MobileNetV2: Inverted Residuals and Linear Bottlenecks*, "
    "CVPR 2018; ImageNet weights under Apache-2.0.\n"
    "- **Grad-CAM**: Selvaraju R. R. et al., ICCV 2017. Grad-CAM++, Score-CAM and SmoothGrad "
    "through tf-keras-vis (MIT licence)."
)
