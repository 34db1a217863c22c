"""Plotly figures for the app: training curves, confusion matrices, probabilities."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bloodcell.cells import DISPLAY_NAMES, SHORT_NAMES
from bloodcell.config import (CLASS_NAMES, TARGET_CROSS_SOURCE_ACCURACY, TARGET_MAX_DROP_POINTS,
                              TARGET_TEST_ACCURACY)

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#d62728"
LR_COLOUR = "#7f7f7f"
BEST_COLOUR = "green"
# The later training phase (fine-tuning) is shaded this colour.
PHASE_COLOUR = "orange"
PHASE_OPACITY = 0.07


# Line styles of the runs of a model averaged from several (bloodcell.soup).
RUN_DASHES = ("solid", "dash", "dot", "dashdot")


def _add_curves(figure: go.Figure, history: list[dict], metric: str, prefix: str = "",
                dash: str = "solid") -> None:
    epochs = [row["epoch"] for row in history]
    # Markers on the first run only, so that a second run's dashes stay visible.
    mode = "lines+markers" if dash == "solid" else "lines"
    figure.add_trace(go.Scatter(x=epochs, y=[row[metric] for row in history], name=f"{prefix}train {metric}",
                                mode=mode, line={"color": TRAIN_COLOUR, "dash": dash}))
    figure.add_trace(go.Scatter(x=epochs, y=[row[f"val_{metric}"] for row in history],
                                name=f"{prefix}validation {metric}", mode=mode,
                                line={"color": VAL_COLOUR, "dash": dash}))
    figure.add_trace(go.Scatter(x=epochs, y=[row["learning_rate"] for row in history],
                                name=f"{prefix}learning rate", mode="lines",
                                line={"color": LR_COLOUR, "dash": "dot" if dash == "solid" else dash}),
                     secondary_y=True)


def _legend_entry(figure: go.Figure, name: str, style: dict) -> None:
    """A name in the legend for a line or shading drawn as a shape. Labels drawn in the plot
    covered the curves (an accuracy near 1 runs along the top, the learning rate along the bottom)."""
    figure.add_trace(go.Scatter(x=[None], y=[None], name=name, hoverinfo="skip", **style))


def _mark_best_epoch(figure: go.Figure, epoch: int, dash: str, name: str) -> None:
    figure.add_vline(x=epoch, line_dash=dash, line_color=BEST_COLOUR)
    _legend_entry(figure, name, {"mode": "lines", "line": {"color": BEST_COLOUR, "dash": dash}})


def _best_epoch(history: list[dict]) -> int:
    """The epoch whose weights a run kept: the lowest validation loss of its last phase."""
    last_phase = [row for row in history if row.get("phase") == history[-1].get("phase")]
    return min(last_phase, key=lambda row: row["val_loss"])["epoch"]


def history_figure(history: list[dict], metric: str, best_epoch: int | None = None,
                   title: str | None = None) -> go.Figure:
    """`metric` ("loss" or "accuracy") per epoch for train and validation, learning rate on a second axis.

    A model averaged from several runs has each row marked with its run; each
    run gets its own line style and its best epoch marked.
    """
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    runs = sorted({row["run"] for row in history if row.get("run") is not None})
    if runs:
        for index, run in enumerate(runs):
            rows = [row for row in history if row.get("run") == run]
            _add_curves(figure, rows, metric, f"run {run}: ", RUN_DASHES[index % len(RUN_DASHES)])
            best = _best_epoch(rows)
            _mark_best_epoch(figure, best, RUN_DASHES[index % len(RUN_DASHES)], f"run {run} best epoch {best}")
        history = [row for row in history if row.get("run") == runs[0]]
    else:
        _add_curves(figure, history, metric)
        if best_epoch is not None:
            _mark_best_epoch(figure, best_epoch, "dash", f"best epoch {best_epoch}")
    epochs = [row["epoch"] for row in history]
    phases = [row.get("phase") for row in history]
    for index in range(1, len(phases)):
        if phases[index] != phases[index - 1]:
            figure.add_vrect(x0=epochs[index] - 0.5, x1=max(epochs) + 0.5, fillcolor=PHASE_COLOUR,
                             opacity=PHASE_OPACITY, line_width=0)
            _legend_entry(figure, f"{str(phases[index]).replace('_', '-')} (shaded)",
                          {"mode": "markers", "marker": {"symbol": "square", "size": 12, "color": PHASE_COLOUR,
                                                         "opacity": 4 * PHASE_OPACITY}})
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


def probability_text(probability: float, decimals: int = 1) -> str:
    """A probability as a percentage that never rounds to a certainty it is not: "> 99.9%", "< 0.1%"."""
    step = 10.0 ** -(decimals + 2)  # the last shown digit, as a probability
    if probability >= 1 - step / 2:
        return f"> {1 - step:.{decimals}%}"
    if probability < step / 2:
        return f"< {step:.{decimals}%}"
    return f"{probability:.{decimals}%}"


def probability_points(probability: float, decimals: int = 1) -> float:
    """A probability in percentage points for a numeric table column shown with `decimals` places.

    Kept one shown step off 0 and 100, so that a model's 99.996% reads 99.9,
    as probability_text's "> 99.9%" does, never a certainty of 100.0.
    """
    step = 10.0 ** -decimals
    return min(max(100 * probability, step), 100 - step)


def probability_figure(probabilities, highlight: int | None = None, threshold: float | None = None,
                       short_names: bool = False) -> go.Figure:
    """Horizontal bars of the five class probabilities (`short_names` for narrow columns)."""
    labels = [(SHORT_NAMES if short_names else DISPLAY_NAMES)[name] for name in CLASS_NAMES]
    colours = ["#2ca02c" if i == highlight else "#9ecae1" for i in range(len(CLASS_NAMES))]
    figure = go.Figure(go.Bar(x=list(np.asarray(probabilities, float)), y=labels, orientation="h",
                              marker_color=colours, text=[probability_text(p) for p in probabilities],
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
    # Counts are whole images: no 0.5 or 1.5 on the axis.
    figure.update_yaxes(tickformat="d", rangemode="tozero", dtick=None if max(counts.values(), default=0) > 10 else 1)
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
        # A model trained on the twins studied for the counterfactual: its bar
        # is hatched and starred, so that it is not read as evidence.
        studied = [key == "counterfactual_accuracy" and bool(row.get("trained on twins")) for row in rows]
        figure.add_trace(go.Bar(x=[row["model"] for row in rows], y=values, name=label, marker_color=colour,
                                marker_pattern_shape=["/" if s else "" for s in studied],
                                text=[None if v is None else f"{v:.1%}" + ("*" if s else "")
                                      for v, s in zip(values, studied)],
                                textposition="outside"))
    figure.update_layout(barmode="group", height=340, margin={"t": 30, "b": 10},
                         yaxis={"tickformat": ".0%", "range": [0, 1.12], "title": "accuracy"},
                         legend={"orientation": "h", "y": -0.15})
    return figure


# (row key prefix in bloodcell.audit.uncertainty_rows, panel title, shown in percent, target)
INTERVAL_PANELS = (("test", "test accuracy", True, TARGET_TEST_ACCURACY),
                   ("drop", "counterfactual drop (points)", False, TARGET_MAX_DROP_POINTS),
                   ("cross-source", "cross-source accuracy", True, TARGET_CROSS_SOURCE_ACCURACY))
INTERVAL_COLOUR = "#1f77b4"
TARGET_COLOUR = "#2ca02c"
# Whole-image models drop 37 and 77 points: beyond this they are drawn at the
# edge with their figure, so that the cell-view models' few points stay legible.
DROP_AXIS_MAX = 10.0


def interval_figure(rows: list[dict]) -> go.Figure:
    """Each model's test accuracy, counterfactual drop and cross-source accuracy as a dot with its
    95% interval (where the audit has one), beside the target line (rows: bloodcell.audit.uncertainty_rows)."""
    figure = make_subplots(rows=1, cols=len(INTERVAL_PANELS), shared_yaxes=True, horizontal_spacing=0.04,
                           subplot_titles=[title for _, title, _, _ in INTERVAL_PANELS])
    for column, (key, title, percent, target) in enumerate(INTERVAL_PANELS, start=1):
        value_key = "drop (points)" if key == "drop" else f"{key} accuracy"
        scale, unit = (100, "%") if percent else (1, " points")
        shown = [row for row in rows if row.get(value_key) is not None]
        if key == "drop":
            beyond = [row for row in shown if row[value_key] > DROP_AXIS_MAX]
            shown = [row for row in shown if row not in beyond]
            figure.add_trace(go.Scatter(
                x=[DROP_AXIS_MAX] * len(beyond), y=[row["model"] for row in beyond], mode="markers+text",
                marker={"symbol": "triangle-right", "color": INTERVAL_COLOUR, "size": 11}, showlegend=False,
                text=[f"{row[value_key]:.0f}" for row in beyond], textposition="middle left",
                hovertemplate="%{y}: %{text} points, off the scale<extra></extra>"), row=1, col=column)
            lowest = min([row["drop low"] for row in shown if row.get("drop low") is not None], default=0.0)
            figure.update_xaxes(range=[min(-1.0, lowest - 0.5), DROP_AXIS_MAX + 0.5], row=1, col=column)
        values = [row[value_key] * scale for row in shown]
        # Without an interval (an audit from before they were kept) the dot stands alone.
        lows = [v if row.get(f"{key} low") is None else row[f"{key} low"] * scale for row, v in zip(shown, values)]
        highs = [v if row.get(f"{key} high") is None else row[f"{key} high"] * scale
                 for row, v in zip(shown, values)]
        figure.add_trace(go.Scatter(
            x=values, y=[row["model"] for row in shown], mode="markers", showlegend=False,
            marker={"color": INTERVAL_COLOUR, "size": 9},
            error_x={"type": "data", "symmetric": False, "color": INTERVAL_COLOUR, "thickness": 2,
                     "array": [high - v for high, v in zip(highs, values)],
                     "arrayminus": [v - low for low, v in zip(lows, values)]},
            customdata=list(zip(lows, highs)),
            hovertemplate=f"%{{y}}: %{{x:.2f}}{unit}<br>95% interval %{{customdata[0]:.2f}} to "
                          f"%{{customdata[1]:.2f}}{unit}<extra>{title}</extra>"), row=1, col=column)
        figure.add_vline(x=target * scale, line={"color": TARGET_COLOUR, "dash": "dash"}, row=1, col=column)
        figure.update_xaxes(ticksuffix="%" if percent else "", row=1, col=column)
        if key == "cross-source":
            figure.update_xaxes(range=[-2, 102], row=1, col=column)
    # A legend entry for the target lines (a line in no panel's range of values).
    figure.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="target",
                                line={"color": TARGET_COLOUR, "dash": "dash"}))
    figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="measured, with its 95% interval",
                                marker={"color": INTERVAL_COLOUR, "size": 9},
                                error_x={"type": "constant", "value": 0}))
    figure.update_yaxes(categoryorder="array", categoryarray=[row["model"] for row in rows][::-1])
    figure.update_layout(height=130 + 34 * len(rows), margin={"t": 40, "b": 10, "l": 10, "r": 10},
                         legend={"orientation": "h", "y": -0.12, "x": 0})
    return figure
