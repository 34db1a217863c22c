"""Training: curves, confusion matrices, reports and cards of every model, side by side."""

import streamlit as st

from bloodcell.cells import DISPLAY_NAMES
from bloodcell.charts import confusion_figure, history_figure, reliability_figure
from bloodcell.config import CLASS_NAMES
from bloodcell.metrics import accuracy_interval
from pages.common import (MISSING, in_percent, load_model_files, load_split_sizes, model_names, models_dir, page_setup,
                          combined_models, percent_column)

page_setup()
st.title("Training")
names = model_names()
if not names:
    st.info("No trained models yet. Train one with `python -m bloodcell train --model cnn`.")
    st.stop()

files = {name: load_model_files(name, str(models_dir())) for name in names}
sizes = load_split_sizes(str(models_dir()))
split_text = (f"{sizes['train']:,} train, {sizes['val']:,} validation, {sizes['test']:,} test images"
              if sizes else "70% train, 15% validation, 15% test")
st.caption(f"Every model trains on the same split ({split_text}; duplicates kept together). Epochs, "
           "learning rate and calibration are chosen on the validation split; the test split is only "
           "used for the numbers below.")


def summary_row(name: str) -> dict:
    card, metrics = files[name]["card"] or {}, files[name]["metrics"] or {}
    cross = files[name]["cross_source"] or {}
    return {"model": name, "test accuracy": metrics.get("accuracy"), "macro F1": metrics.get("macro_f1"),
            "cross-source accuracy": cross.get("accuracy"),
            "test images": metrics.get("n"), "epochs": card.get("epochs_run"),
            # A model averaged from several runs (bloodcell.soup) counts every run's epochs and time.
            "runs": len((card.get("soup") or {}).get("runs") or [None]),
            "training time (min)": round(card.get("training_seconds", 0) / 60, 1),
            "parameters": card.get("parameters"),
            "file size (MB)": round(card.get("file_size_bytes", 0) / 2**20, 1),
            "temperature": card.get("calibration", {}).get("temperature")}


st.dataframe(in_percent([summary_row(n) for n in names], ("test accuracy", "cross-source accuracy")),
             hide_index=True, width="stretch", placeholder=MISSING,
             column_config={"test accuracy": percent_column(2),
                            "cross-source accuracy": percent_column(
                                1, help="300 segmented neutrophils photographed in the "
                                "other lab (evaluation only; see About)"),
                            "macro F1": st.column_config.NumberColumn(format="%.4f"),
                            "runs": st.column_config.NumberColumn(
                                help="training runs whose weights were averaged into the model; its "
                                "epochs and training time count them all (About has each run)"),
                            "training time (min)": st.column_config.NumberColumn(format="%.1f"),
                            "file size (MB)": st.column_config.NumberColumn(format="%.1f"),
                            "parameters": st.column_config.NumberColumn(format="localized"),
                            "temperature": st.column_config.NumberColumn(format="%.2f")})


# More than two charts side by side are too narrow to read on a laptop screen.
MODELS_PER_ROW = 2


def side_by_side():
    """One column per model, two to a row, headed by its name; yields each name inside its column."""
    for start in range(0, len(names), MODELS_PER_ROW):
        for column, name in zip(st.columns(MODELS_PER_ROW), names[start:start + MODELS_PER_ROW]):
            with column:
                st.subheader(name)
                yield name


curves, confusion, report, calibration, cards = st.tabs(
    ["Curves", "Confusion matrices", "Classification report", "Calibration", "Model cards"])

with curves:
    for name in side_by_side():
        history, card = files[name]["history"], files[name]["card"] or {}
        if card.get("pair") or card.get("route"):
            st.info(f"Trains nothing of its own: {combined_models(card)}; their curves are theirs.")
            continue
        if not history:
            st.warning("history.json is missing.")
            continue
        for metric in ("loss", "accuracy"):
            st.plotly_chart(history_figure(history, metric, card.get("best_epoch"), metric.title()),
                            width="stretch", key=f"{name}_{metric}")

with confusion:
    normalise = st.toggle("Row-normalised (recall per class)", value=False)
    for name in side_by_side():
        metrics = files[name]["metrics"]
        if metrics:
            st.plotly_chart(confusion_figure(metrics["confusion_matrix"], normalise,
                                             f"Test split, n={metrics['n']}"),
                            width="stretch", key=f"{name}_cm")

with report:
    for name in side_by_side():
        metrics = files[name]["metrics"]
        if metrics:
            rows = [{"class": DISPLAY_NAMES[c], **metrics["per_class"][c]} for c in CLASS_NAMES]
            st.dataframe(rows, hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(format="%.4f")
                                        for k in ("precision", "recall", "f1")})
            st.metric("Accuracy", f"{metrics['accuracy']:.2%}")
            if metrics.get("n"):
                low, high = accuracy_interval(metrics["accuracy"], metrics["n"])
                st.caption(f"95% interval {low:.2%} to {high:.2%} ({metrics['n']} test images): where the "
                           "accuracy would probably land on other images from the same two labs.")

with calibration:
    st.markdown("Temperature scaling divides the logits by one number fitted on the validation "
                "split. Predictions stay the same; the confidence comes to mean what it says. "
                "Below: accuracy against confidence on the **test** split, before and after.")
    for name in side_by_side():
        card = files[name]["card"] or {}
        if "calibration" in card:
            cal = card["calibration"]
            st.plotly_chart(reliability_figure(cal, "test"), width="stretch", key=f"{name}_rel")
            st.caption(f"T = {cal['temperature']:.2f}; test ECE {cal['test']['ece_before']:.4f} → "
                       f"{cal['test']['ece_after']:.4f}; validation ECE {cal['val']['ece_before']:.4f} → "
                       f"{cal['val']['ece_after']:.4f}")
        else:
            st.info("Not calibrated yet: `python -m bloodcell calibrate --model " + name + "`.")

with cards:
    for name in side_by_side():
        card = files[name]["card"]
        if card:
            shown = {k: v for k, v in card.items() if k != "calibration"}
            st.json(shown, expanded=1)
