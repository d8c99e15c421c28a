"""Every figure of the default run fits its canvas: no title, label, legend entry or note leaves the figure.

The UMAP figures are drawn at the default run's shapes (4 x 3 grid; 3 models side by side; the digits' 10
classes, synthetic-cxr's multi-label categories, a nuisance with long values) through the same functions
the workflow calls, and checked with :func:`vlmprobe.figures.texts_outside` at their saved size;
:func:`vlmprobe.io.save_figure` logs the same check for every figure the workflow writes.
"""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest

from vlmprobe.figures import texts_outside
from vlmprobe.umap.figures import panel_grid, plot_grid, plot_models_at_cell
from vlmprobe.umap.grid import GridResult

KS, MS = [5, 15, 50, 200], [0.1, 0.5, 1.0]
COLOURINGS = {
    "digits": [str(d) for d in range(10)],
    "synthetic-cxr": ["normal", "one finding", "several"],
    "long": ["a rather long class name that used to be clipped", "short", "another quite long category label"],
    "many": [f"patient-{p:03d}" for p in range(40)],
}


def grid_result(n: int, seed: int = 0) -> GridResult:
    rng = np.random.default_rng(seed)
    coords = rng.normal(size=(len(KS), len(MS), n, 2))
    quality = pl.DataFrame({"n_neighbors": np.repeat(KS, len(MS)), "min_dist": np.tile(MS, len(KS)), "trustworthiness": 0.9, "silhouette": 0.1})
    params = {"trust_n_neighbors": 10, "trust_subsample": 2000, "metric": "cosine", "seed": 0}
    return GridResult(KS, MS, coords, quality, [], params)


@pytest.mark.parametrize("colouring", sorted(COLOURINGS))
def test_grid_figure_fits(colouring):
    names = COLOURINGS[colouring]
    labels = [names[i % len(names)] for i in range(400)]
    title = "synthetic-cxr-patients / resnet18: UMAP (cosine) coloured by meta_patient, rows n_neighbors, columns min_dist"
    figure = plot_grid(grid_result(400), labels, title, legend_title="patient" if colouring == "many" else "class")
    try:
        assert texts_outside(figure) == []
        legend = figure.legends[0]
        assert [t.get_text() for t in legend.get_texts()] == sorted(set(labels))
    finally:
        plt.close(figure)


@pytest.mark.parametrize("n_models", [1, 2, 3, 5, 16])
def test_models_figure_fits_says_the_cell_once_and_has_no_empty_panel(n_models):
    rng = np.random.default_rng(0)
    names = COLOURINGS["long"]
    per_model = {f"model-{m}-with-a-name": (rng.normal(size=(300, 2)), [names[i % 3] for i in range(300)]) for m in range(n_models)}
    figure = plot_models_at_cell(per_model, 15, 0.1, "synthetic-cxr-patients: every model", quality={m: (0.9, 0.2) for m in per_model})
    try:
        assert texts_outside(figure) == []
        title = figure._suptitle.get_text().replace("\n", " ")
        assert title.count("n_neighbors") == 1 and title.count("min_dist") == 1, title
        rows, columns = panel_grid(n_models)
        assert len(figure.axes) == rows * columns
        if n_models in (1, 2, 3, 16):
            assert all(ax.get_visible() for ax in figure.axes)
    finally:
        plt.close(figure)


def test_panel_grid_leaves_no_avoidable_hole():
    assert [panel_grid(n) for n in (1, 3, 4, 6, 8, 9, 12, 16)] == [(1, 1), (1, 3), (1, 4), (2, 3), (2, 4), (3, 3), (3, 4), (4, 4)]


def test_a_clipped_text_is_found_and_logged(tmp_path, caplog):
    figure = plt.figure(figsize=(2, 1))
    figure.suptitle("a title far too long for a two-inch-wide figure to hold")
    assert len(texts_outside(figure)) == 1
    from vlmprobe.io import save_figure

    with caplog.at_level(logging.WARNING):
        save_figure(tmp_path / "clipped.png", figure)
    assert "text leaves the figure" in caplog.text and "clipped.png" in caplog.text


def test_tick_labels_matplotlib_does_not_draw_are_not_counted():
    # The default locator keeps tick labels beyond the view limits (here at 0.4 and 1.1) as artists it never draws.
    figure, ax = plt.subplots(figsize=(4, 2.5), layout="constrained")
    ax.plot([0.5, 1.0], [0.5, 1.0])
    ax.set_xlim(0.48, 1.02)
    ax.set_ylim(0.48, 1.02)
    figure.canvas.draw()
    low, high = ax.get_ylim()
    assert [t for t in ax.get_yticks() if not low <= t <= high], "the precondition: ticks beyond the limits"
    try:
        assert texts_outside(figure) == []
    finally:
        plt.close(figure)
