"""About: what the models are, where the data comes from, and their limits."""

import streamlit as st

from pages.common import (MISSING, in_percent, load_model_files, model_names, models_dir, page_setup, percent_column,
                          training_runs)

CROSS_SOURCE_COLUMN = "segmented neutrophils from the other lab: accuracy"

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
    "in the Barcelona lab, used for evaluation only (accuracy per model below; the Trust page has "
    "the full audit). The default model, cellfocus, sees only the cell: cropped, stain-normalised, "
    "background removed. cellgrey sees the same view in grey levels with its finest detail softened, "
    "so that neither colour nor the sharper scanner can give the lab away; it misses the test-split "
    "target. cellfill sees a view that the cell always fills, so its size in the photo (which depends "
    "on the lab's magnification) is gone; it misses the counterfactual target. celltexture is "
    "cellfocus trained on random textures too (each training view's fine texture scrambled by a "
    "random filter), so that what a scanner and a stain do to texture is not worth learning; it "
    "misses the test-split and counterfactual targets, but on the other lab's neutrophils it scores "
    "higher than the others; five training runs with random textures (one on the filled view) "
    "averaged 56.6% there, against 34–46% for two runs of each other recipe. Its first runs' "
    "results on those cells are why this recipe was pursued, so its figure there is somewhat "
    "optimistic (lab notebook, docs/lab-notebook.md: 'Random "
    "textures, measured'). celltwin is celltexture trained on counterfactual twins as well: half its training "
    "views show the cell as the other lab would (its stain, background, magnification and "
    "sharpness), under the same label. It scores 79.3% on the other lab's neutrophils, the most of "
    "any model, and 99.41% on the test split, one image short of the target; two more training runs "
    "of its recipe scored 75.7% and 60.3% on those neutrophils, so expect nearer 70% from the recipe "
    "than 79%. It was trained on the "
    "counterfactual's own transform, so its counterfactual figure on the Trust page is no evidence; "
    "and the twins were followed up because earlier runs did well on those neutrophils, so that "
    "figure is somewhat optimistic too. If your cells come from a lab unlike both, compare celltwin "
    "with cellfocus on the Predict page.\n"
    "- **Single cells only.** The models were trained on crops centred on one white cell. An "
    "image far from every training image (a whole smear, a photo of anything else, a blank "
    "slide) is flagged as not a single blood-cell image; the check is a distance in the model's "
    "feature space, so an unusual cell can be flagged and an odd image can slip through.\n"
    "- **Calibrated on the validation split.** Probabilities are temperature-scaled; on images unlike "
    "the training set they can still be confidently wrong."
)

cross_source = {name: load_model_files(name, str(models_dir()))["cross_source"] for name in model_names()}
st.dataframe(in_percent([{"model": name, CROSS_SOURCE_COLUMN: (result or {}).get("accuracy"),
                          "images": (result or {}).get("n")} for name, result in cross_source.items()],
                        [CROSS_SOURCE_COLUMN]),
             hide_index=True, placeholder=MISSING, column_config={CROSS_SOURCE_COLUMN: percent_column(1)})

st.header("Models")
for name in model_names():
    card = load_model_files(name, str(models_dir()))["card"] or {}
    with st.expander(f"{name}: {card.get('description', '')}"):
        env = card.get("environment", {})
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
