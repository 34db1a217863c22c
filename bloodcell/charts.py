"""Plotly figures for the app: training curves, confusion matrices, probabilities."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bloodcell.cells import DISPLAY_NAMES, SHORT_NAMES
from bloodcell.config import CLASS_NAMES

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#d62728"
LR_COLOUR = "#7f7f7f"


def history_figure(history: list[dict], metric: str, best_epoch: int | None = None,
                   title: str | None = None) -> go.Figure:
    """`metric` ("loss" or "accuracy") per epoch for train and validation, learning rate on a second axis."""
    epochs = [row["epoch"] for row in history]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Scatter(x=epochs, y=[row[metric] for row in history], name=f"train {metric}",
                                mode="lines+markers", line={"color": TRAIN_COLOUR}))
    figure.add_trace(go.Scatter(x=epochs, y=[row[f"val_{metric}"] for row in history],
                                name=f"validation {metric}", mode="lines+markers", line={"color": VAL_COLOUR}))
    figure.add_trace(go.Scatter(x=epochs, y=[row["learning_rate"] for row in history], name="learning rate",
                                mode="lines", line={"color": LR_COLOUR, "dash": "dot"}), secondary_y=True)
    if best_epoch is not None:
        figure.add_vline(x=best_epoch, line_dash="dash", line_color="green",
                         annotation_text=f"best epoch {best_epoch}", annotation_position="top left")
    phases = [row.get("phase") for row in history]
    for index in range(1, len(phases)):
        if phases[index] != phases[index - 1]:
            figure.add_vrect(x0=epochs[index] - 0.5, x1=epochs[-1] + 0.5, fillcolor="orange", opacity=0.07,
                             line_width=0, annotation_text=str(phases[index]).replace("_", "-"),
                             annotation_position="bottom right")
    figure.update_yaxes(title_text=metric, secondary_y=False)
    figure.update_yaxes(title_text="learning rate", type="log", tickformat=".0e", secondary_y=True,
                        showgrid=False)
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title=title, height=340, margin={"t": 40, "b": 10, "l": 10, "r": 10},
                         legend={"orientation": "h", "y": -0.25})
    return figure


def confusion_figure(matrix, normalise: bool = False, title: str | None = None) -> go.Figure:
    """Heatmap of a confusion matrix: rows true class, columns predicted class."""
    counts = np.asarray(matrix, dtype=float)
    if normalise:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        text = [[f"{v:.1%}" for v in row] for row in values]
    else:
        values = counts
        text = [[f"{int(v)}" for v in row] for row in values]
    labels = [DISPLAY_NAMES[name] for name in CLASS_NAMES]
    figure = go.Figure(go.Heatmap(z=values, x=labels, y=labels, text=text, texttemplate="%{text}",
                                  colorscale="Blues", showscale=False,
                                  hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", title_text="true class")
    figure.update_xaxes(title_text="predicted class")
    figure.update_layout(title=title, height=360, margin={"t": 40, "b": 10, "l": 10, "r": 10})
    return figure


def probability_figure(probabilities, highlight: int | None = None, threshold: float | None = None,
                       short_names: bool = False) -> go.Figure:
    """Horizontal bars of the five class probabilities (`short_names` for narrow columns)."""
    labels = [(SHORT_NAMES if short_names else DISPLAY_NAMES)[name] for name in CLASS_NAMES]
    colours = ["#2ca02c" if i == highlight else "#9ecae1" for i in range(len(CLASS_NAMES))]
    figure = go.Figure(go.Bar(x=list(np.asarray(probabilities, float)), y=labels, orientation="h",
                              marker_color=colours, text=[f"{p:.1%}" for p in probabilities],
                              textposition="auto"))
    if threshold is not None:
        figure.add_vline(x=threshold, line_dash="dot", line_color="grey")
    figure.update_xaxes(range=[0, 1], tickformat=".0%")
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(height=220, margin={"t": 10, "b": 10, "l": 10, "r": 10})
    return figure


def counts_figure(counts: dict[str, int], title: str | None = None) -> go.Figure:
    names = [DISPLAY_NAMES.get(k, k) for k in counts]
    figure = go.Figure(go.Bar(x=names, y=list(counts.values()), text=list(counts.values()),
                              textposition="auto", marker_color="#6a51a3"))
    figure.update_layout(title=title, height=300, margin={"t": 40, "b": 10, "l": 10, "r": 10})
    return figure


def reliability_figure(calibration: dict, split: str = "test") -> go.Figure:
    """Accuracy against confidence per bin, before and after temperature scaling."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                                line={"color": "grey", "dash": "dash"}))
    report = calibration[split]
    for key, name, colour in (("reliability_before", "before", VAL_COLOUR),
                              ("reliability_after", f"after (T={calibration['temperature']:.2f})", TRAIN_COLOUR)):
        bins = report[key]
        figure.add_trace(go.Scatter(x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins],
                                    mode="lines+markers", name=name, line={"color": colour},
                                    marker={"size": [6 + 3 * np.log1p(b["count"]) for b in bins]},
                                    customdata=[b["count"] for b in bins],
                                    hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata} images"))
    figure.update_xaxes(title_text="mean confidence in bin", range=[0, 1.02])
    figure.update_yaxes(title_text="accuracy in bin", range=[0, 1.02])
    figure.update_layout(height=340, margin={"t": 30, "b": 10, "l": 10, "r": 10},
                         legend={"orientation": "h", "y": -0.3})
    return figure


def mean_colour_figure(colours: dict[str, tuple]) -> go.Figure:
    """One swatch bar per class, coloured by its mean RGB, with channel values."""
    names = [DISPLAY_NAMES[k] for k in colours]
    rgb = [tuple(int(round(c)) for c in mean) for mean, _ in colours.values()]
    figure = go.Figure(go.Bar(x=names, y=[1] * len(names), marker_color=[f"rgb{c}" for c in rgb],
                              text=[f"R{c[0]} G{c[1]} B{c[2]}" for c in rgb], textposition="inside",
                              hoverinfo="text"))
    figure.update_yaxes(visible=False)
    figure.update_layout(height=180, margin={"t": 10, "b": 10, "l": 10, "r": 10})
    return figure


AUDIT_SERIES = (("test_accuracy", "test split", "#1f77b4"),
                ("counterfactual_accuracy", "test split as the other lab", "#ff7f0e"),
                ("cross_source_accuracy", "cross-source cells", "#d62728"))


def audit_figure(rows: list[dict]) -> go.Figure:
    """Grouped bars per model: test, counterfactual and cross-source accuracy."""
    figure = go.Figure()
    keys = {"test_accuracy": "test accuracy", "counterfactual_accuracy": "counterfactual accuracy",
            "cross_source_accuracy": "cross-source accuracy"}
    for key, label, colour in AUDIT_SERIES:
        values = [row.get(keys[key]) for row in rows]
        figure.add_trace(go.Bar(x=[row["model"] for row in rows], y=values, name=label, marker_color=colour,
                                text=[None if v is None else f"{v:.1%}" for v in values],
                                textposition="outside"))
    figure.update_layout(barmode="group", height=340, margin={"t": 30, "b": 10},
                         yaxis={"tickformat": ".0%", "range": [0, 1.12], "title": "accuracy"},
                         legend={"orientation": "h", "y": -0.15})
    return figure
