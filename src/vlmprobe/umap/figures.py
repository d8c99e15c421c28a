"""UMAP figures: the grid of one (dataset, model) and one cell across models.

* :func:`plot_grid`: rows are n_neighbors, columns min_dist, points coloured by class, one legend; each
  panel carries its trustworthiness (T) and silhouette (S) so a pretty cell can be told from a faithful one.
* :func:`plot_models_at_cell`: the poster's way of comparing models: the same cell for every model of a
  dataset, side by side, with the same colours.
* :func:`multilabel_colour_labels`: colour categories for multi-label datasets: one chosen finding
  (``<finding>`` / ``other``) or ``normal`` / ``one finding`` / ``several``.

Matplotlib runs on the Agg backend (no display needed); save with :func:`vlmprobe.io.save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from vlmprobe.errors import VlmprobeError  # noqa: E402

NORMAL = "normal"
ONE_FINDING = "one finding"
SEVERAL = "several"
PANEL_INCHES = 2.3


def multilabel_colour_labels(indicator: np.ndarray, classes: Sequence[str], colour_by: str | None, normal_class: str | None = None) -> list[str]:
    """Colour categories for a multi-label dataset.

    ``indicator`` is ``(n_samples, n_classes)`` 0/1. With ``colour_by`` a class name: that name or
    ``"other"``. With ``colour_by=None``: ``normal`` (no finding), ``one finding`` or ``several``. A class named
    ``normal_class`` (e.g. "normal" or "No Finding") is not counted as a finding.
    """
    indicator = np.asarray(indicator) > 0
    classes = list(classes)
    if indicator.ndim != 2 or indicator.shape[1] != len(classes):
        raise ValueError(f"indicator {indicator.shape} does not match {len(classes)} classes")
    if colour_by is not None:
        if colour_by not in classes:
            raise VlmprobeError(
                f"umap.colour_by {colour_by!r} is not a label of this dataset.",
                f"Use one of {classes} or null (normal / one finding / several).",
            )
        column = indicator[:, classes.index(colour_by)]
        return [colour_by if flag else "other" for flag in column]
    findings = indicator
    if normal_class is not None and normal_class in classes:
        findings = np.delete(indicator, classes.index(normal_class), axis=1)
    counts = findings.sum(axis=1)
    return [NORMAL if c == 0 else ONE_FINDING if c == 1 else SEVERAL for c in counts]


def category_order(labels: Sequence[str]) -> list[str]:
    """Legend order: the multi-label summary categories in their natural order, otherwise sorted."""
    present = set(labels)
    natural = [name for name in (NORMAL, ONE_FINDING, SEVERAL) if name in present]
    if natural and len(natural) == len(present):
        return natural
    return sorted(present)


def palette(n: int) -> list[Any]:
    """``n`` distinguishable colours: tab10 / tab20, beyond that evenly spaced on a rainbow map."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("gist_rainbow")(i / max(1, n - 1)) for i in range(n)]


def _marker_size(n_points: int) -> float:
    return float(np.clip(3000.0 / max(1, n_points), 0.3, 12.0))


def _scatter(ax, xy: np.ndarray, codes: np.ndarray, colours: np.ndarray, order: np.ndarray) -> None:
    # A fixed shuffled drawing order, so the last-drawn class does not hide the others.
    ax.scatter(xy[order, 0], xy[order, 1], c=colours[codes[order]], s=_marker_size(len(xy)), linewidths=0, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")


def _encode(labels: Sequence[str], order: Sequence[str] | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = list(order) if order is not None else category_order(labels)
    missing = set(labels) - set(names)
    if missing:
        raise ValueError(f"labels {sorted(missing)} are not in the given order")
    index = {name: i for i, name in enumerate(names)}
    codes = np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))
    return names, codes, np.array(palette(len(names)))


def _legend(fig: Figure, names: Sequence[str], colours: np.ndarray, title: str | None, ncol: int = 1):
    handles = [Line2D([], [], marker="o", linestyle="", markersize=6, color=colours[i], label=name) for i, name in enumerate(names)]
    return fig.legend(handles=handles, loc="center right", title=title, ncol=ncol, frameon=False, fontsize=8, title_fontsize=9)


def _legend_and_layout(fig: Figure, names: Sequence[str], colours: np.ndarray, title: str | None, panels_inches: float, bottom: float = 0.0) -> None:
    """Place the legend right of the panels at its measured size: as many columns as it needs to fit the
    figure's height, the figure widened by the legend's real width (not a guess per character, which clipped
    long labels), then the panels laid out in what is left."""
    renderer = fig.canvas.get_renderer()
    legend = _legend(fig, names, colours, title)
    height = legend.get_window_extent(renderer).height / fig.dpi
    ncol = max(1, math.ceil(height / (0.92 * fig.get_figheight())))
    if ncol > 1:
        legend.remove()
        legend = _legend(fig, names, colours, title, ncol=ncol)
    legend_inches = legend.get_window_extent(renderer).width / fig.dpi + 0.15
    fig.set_figwidth(panels_inches + legend_inches)
    _fit_texts(fig)
    fig.tight_layout(rect=(0, bottom, 1 - legend_inches / fig.get_figwidth(), 1))  # tight_layout leaves room for the suptitle


def _fit_texts(fig: Figure) -> None:
    """Wrap the suptitle and figure-level notes to the figure's width, so no line runs off the canvas."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    width = fig.get_figwidth() * fig.dpi
    for text in ([fig._suptitle] if fig._suptitle is not None else []) + list(fig.texts):
        x0 = text.get_window_extent(renderer).x0 if text.get_horizontalalignment() == "left" else 0
        room = width - 2 * max(x0, 0.01 * width)
        extent = text.get_window_extent(renderer)
        if extent.width > room:
            characters = len(text.get_text().replace("\n", ""))
            per_line = max(20, int(characters * room / extent.width * 0.95))
            text.set_text("\n".join(textwrap.fill(line, per_line) for line in text.get_text().split("\n")))


def panel_grid(n_panels: int) -> tuple[int, int]:
    """(rows, columns) for ``n_panels`` with as few empty panels as the count allows: one row up to four
    panels, else about square (3 models: 1 x 3, not a 2 x 2 with a hole)."""
    if n_panels <= 4:
        return 1, n_panels
    best = None
    for n_cols in range(math.ceil(math.sqrt(n_panels)), n_panels + 1):
        n_rows = math.ceil(n_panels / n_cols)
        key = (n_rows * n_cols - n_panels, abs(n_cols - n_rows))
        if best is None or key < best[0]:
            best = (key, (n_rows, n_cols))
        if n_cols > 2 * n_rows:
            break
    return best[1]


def plot_grid(
    result: Any,
    labels_for_colour: Sequence[str],
    title: str,
    *,
    order: Sequence[str] | None = None,
    legend_title: str | None = "class",
    seed: int = 0,
    silhouette_of: str = "the classes",
) -> Figure:
    """Rows = n_neighbors, columns = min_dist, of a :class:`vlmprobe.umap.grid.GridResult`.

    ``silhouette_of`` names what the quality table's silhouette column scores (for the footnote)."""
    labels = [str(label) for label in labels_for_colour]
    if len(labels) != result.n_samples:
        raise ValueError(f"{len(labels)} colour labels for {result.n_samples} points")
    names, codes, colours = _encode(labels, order)
    n_rows, n_cols = len(result.n_neighbors), len(result.min_dists)
    scores = {
        (row["n_neighbors"], row["min_dist"]): (row["trustworthiness"], row["silhouette"])
        for row in result.quality.iter_rows(named=True)
    }
    draw_order = np.random.RandomState(seed).permutation(result.n_samples)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * PANEL_INCHES + 1.5, n_rows * PANEL_INCHES + 0.9), squeeze=False)
    for i, k in enumerate(result.n_neighbors):
        for j, m in enumerate(result.min_dists):
            ax = axes[i, j]
            _scatter(ax, result.coords[i, j], codes, colours, draw_order)
            trust, silhouette = scores.get((k, m), (math.nan, math.nan))
            ax.text(
                0.02, 0.02, f"T {trust:.3f}  S {silhouette:.2f}", transform=ax.transAxes, fontsize=7,
                va="bottom", ha="left", bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1},
            )
            if i == 0:
                ax.set_title(f"min_dist = {m:g}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"n_neighbors = {k}", fontsize=9)
    fig.suptitle(title, fontsize=11)
    params = getattr(result, "params", {}) or {}
    fig.text(
        0.01, 0.003,
        f"T: trustworthiness ({params.get('trust_n_neighbors', '?')} neighbours, {params.get('trust_subsample', '?')} points); "
        f"S: silhouette of {silhouette_of} on the 2-D layout. UMAP metric={params.get('metric', 'cosine')}, seed={params.get('seed', '?')}.",
        fontsize=7, va="bottom", ha="left", color="0.3",
    )
    _legend_and_layout(fig, names, colours, legend_title, n_cols * PANEL_INCHES + 0.3, bottom=0.3 / fig.get_figheight())
    return fig


def plot_models_at_cell(
    per_model: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    n_neighbors: int,
    min_dist: float,
    title: str,
    *,
    quality: Mapping[str, tuple[float, float]] | None = None,
    order: Sequence[str] | None = None,
    legend_title: str | None = "class",
    n_cols: int | None = None,
    seed: int = 0,
) -> Figure:
    """One panel per model (``{model: (xy, colour labels)}``) at one cell; shared colours and legend.

    ``quality``: optional ``{model: (trustworthiness, silhouette)}`` written in each panel.
    """
    if not per_model:
        raise ValueError("no models to plot")
    all_labels = [str(label) for _, labels in per_model.values() for label in labels]
    names, _, colours = _encode(all_labels, order)
    index = {name: i for i, name in enumerate(names)}
    n_panels = len(per_model)
    n_rows, n_cols = panel_grid(n_panels) if n_cols is None else (math.ceil(n_panels / n_cols), n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * PANEL_INCHES * 1.2 + 1.5, n_rows * PANEL_INCHES * 1.2 + 0.7), squeeze=False)
    for position, (model, (xy, labels)) in enumerate(per_model.items()):
        ax = axes[position // n_cols, position % n_cols]
        xy = np.asarray(xy)
        if len(labels) != len(xy):
            raise ValueError(f"model {model!r}: {len(labels)} colour labels for {len(xy)} points")
        codes = np.fromiter((index[str(label)] for label in labels), dtype=np.int64, count=len(labels))
        _scatter(ax, xy, codes, colours, np.random.RandomState(seed).permutation(len(xy)))
        ax.set_title(model, fontsize=9)
        if quality and model in quality:
            trust, silhouette = quality[model]
            ax.text(
                0.02, 0.02, f"T {trust:.3f}  S {silhouette:.2f}", transform=ax.transAxes, fontsize=7,
                va="bottom", ha="left", bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1},
            )
    for position in range(n_panels, n_rows * n_cols):
        axes[position // n_cols, position % n_cols].set_visible(False)
    fig.suptitle(f"{title} at n_neighbors = {n_neighbors}, min_dist = {min_dist:g}", fontsize=11)
    _legend_and_layout(fig, names, colours, legend_title, n_cols * PANEL_INCHES * 1.2 + 0.3)
    return fig
