"""The side-by-side speed table: one row per model, every column filled."""

from __future__ import annotations

import sys

from benchmarks import model_speed


def test_prints_one_row_per_model_with_every_figure(tiny_models_dir, drawn_dataset, monkeypatch, capsys):
    monkeypatch.setenv("BLOODCELL_MODELS", str(tiny_models_dir))
    monkeypatch.setenv("BLOODCELL_DATA", str(drawn_dataset))
    monkeypatch.setattr(sys, "argv", ["model_speed", "--runs", "2", "--batch", "3", "--models", "cnn"])
    model_speed.main()
    lines = capsys.readouterr().out.splitlines()
    header, row = lines[1], lines[-1]
    assert row.startswith("| cnn |") and row.count("|") == header.count("|")
    figures = [float(cell) for cell in row.strip("|").split("|")[2:]]
    assert len(figures) == len(model_speed.COLUMNS) and all(figure > 0 for figure in figures)
