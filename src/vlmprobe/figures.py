"""Figures shared by the summary steps.

:func:`metric_heatmap` draws any long-format summary table that has a two-way shape (models ×
datasets, models × settings, ...) as a colour grid with the number written in every cell, so a
table of many cells can be read at a glance and still be read exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MISSING_CELL = "—"


def _as_polars(df: Any):
    """Accept a polars or pandas DataFrame, a pyarrow Table, or a dict of columns."""
    import polars as pl
    import pyarrow as pa

    if isinstance(df, pl.DataFrame):
        return df
    if isinstance(df, pa.Table):
        return pl.from_arrow(df)
    if hasattr(df, "iloc"):  # pandas, without importing it
        return pl.from_pandas(df)
    return pl.DataFrame(df)


def _default_format(values: np.ndarray) -> Callable[[float], str]:
    """Fractions in [0, 1] as percentages, other numbers with three significant digits."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:
        return lambda v: f"{v * 100:.0f}%" if v >= 0.1 else f"{v * 100:.1f}%"
    return lambda v: f"{v:.3g}"


def metric_heatmap(
    df: Any,
    row: str,
    column: str,
    value: str,
    title: str,
    *,
    row_order: Sequence[str] | None = None,
    column_order: Sequence[str] | None = None,
    fmt: str | Callable[[float], str] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    colorbar_label: str | None = None,
    annotations: Any = None,
    ax: Any = None,
):
    """A colour grid of ``value`` with ``row`` values down and ``column`` values across.

    ``df`` is a long table (polars, pandas or pyarrow) with one row per cell; a (row, column) pair
    that appears twice is an error (aggregate first). Missing cells and NaN values are left blank
    (white) and show ``—``. Every other cell shows its number: fractions in [0, 1] as percentages
    unless ``fmt`` (a format string such as ``"{:.2f}"`` or a callable) says otherwise; the text is
    black or white, whichever reads better on the cell's colour. ``annotations`` (optional) names a
    column of strings to write instead of the formatted number (e.g. ``"71% (chance 18%)"``).
    Rows and columns keep their first-appearance order unless ``row_order``/``column_order`` are given.
    ``ax``: draw into this axes (for multi-panel figures) instead of a new figure.

    Returns the matplotlib Figure; the caller saves it (``vlmprobe.io.save_figure``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    table = _as_polars(df)
    for name in (row, column, value) + ((annotations,) if annotations else ()):
        if name not in table.columns:
            raise KeyError(f"metric_heatmap: column {name!r} is not in the table (columns: {table.columns})")
    rows = list(row_order) if row_order is not None else [str(v) for v in table[row].cast(str).unique(maintain_order=True).to_list()]
    columns = list(column_order) if column_order is not None else [str(v) for v in table[column].cast(str).unique(maintain_order=True).to_list()]
    grid = np.full((len(rows), len(columns)), np.nan)
    texts: dict[tuple[int, int], str] = {}
    seen: set[tuple[int, int]] = set()
    row_index = {name: i for i, name in enumerate(rows)}
    column_index = {name: j for j, name in enumerate(columns)}
    for record in table.iter_rows(named=True):
        r, c = str(record[row]), str(record[column])
        if r not in row_index or c not in column_index:
            continue
        key = (row_index[r], column_index[c])
        if key in seen:
            raise ValueError(f"metric_heatmap: more than one {value!r} for {row}={r!r}, {column}={c!r}; aggregate the table first")
        seen.add(key)
        number = record[value]
        grid[key] = np.nan if number is None else float(number)
        if annotations and record[annotations] is not None:
            texts[key] = str(record[annotations])

    if fmt is None:
        formatter = _default_format(grid)
    elif isinstance(fmt, str):
        formatter = fmt.format
    else:
        formatter = fmt

    if ax is None:
        width = min(2.0 + 1.15 * len(columns) + max((len(name) for name in rows), default=4) * 0.07, 24)
        height = min(1.6 + 0.45 * len(rows), 30)
        figure, ax = plt.subplots(figsize=(width, height), layout="constrained")
    else:
        figure = ax.figure
    finite = grid[np.isfinite(grid)]
    low = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    high = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if high <= low:
        high = low + 1e-9
    colour_map = matplotlib.colormaps[cmap].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colour_map, vmin=low, vmax=high, aspect="auto")
    long_names = max((len(name) for name in columns), default=0) > 8
    ax.set_xticks(range(len(columns)), labels=columns, rotation=30 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel(column)
    ax.set_ylabel(row)
    ax.set_title(title)
    ax.set_xticks(np.arange(-0.5, len(columns), 1), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows), 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    font_size = 9 if len(columns) <= 8 else 7
    for i in range(len(rows)):
        for j in range(len(columns)):
            number = grid[i, j]
            if not math.isfinite(number):
                ax.text(j, i, MISSING_CELL, ha="center", va="center", color="0.45", fontsize=font_size)
                continue
            red, green, blue, _ = colour_map((number - low) / (high - low))
            luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
            ax.text(
                j, i, texts.get((i, j), formatter(number)), ha="center", va="center",
                color="black" if luminance > 0.5 else "white", fontsize=font_size,
            )
    bar = figure.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(colorbar_label or value)
    return figure


def texts_outside(figure: Any, tolerance_px: float = 1.0) -> list[str]:
    """Every visible text of ``figure`` (titles, labels, legend entries, notes) whose drawn extent leaves the
    canvas, as ``'text' (x0, y0, x1, y1 px)``; an empty list when everything fits. Extents scale with the dpi,
    so checking at the figure's own dpi holds for any saved dpi of the same size."""
    from matplotlib.text import Text

    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    canvas = figure.bbox
    outside = []
    undrawn = _undrawn_tick_labels(figure)
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or (text.axes is not None and not text.axes.get_visible()) or id(text) in undrawn:
            continue
        box = text.get_window_extent(renderer)
        if (
            box.x0 < canvas.x0 - tolerance_px
            or box.y0 < canvas.y0 - tolerance_px
            or box.x1 > canvas.x1 + tolerance_px
            or box.y1 > canvas.y1 + tolerance_px
        ):
            outside.append(f"{text.get_text()!r} ({box.x0:.0f}, {box.y0:.0f}, {box.x1:.0f}, {box.y1:.0f} px on {canvas.width:.0f} x {canvas.height:.0f})")
    return outside


def _undrawn_tick_labels(figure: Any) -> set[int]:
    """Matplotlib keeps label artists for ticks beyond an axis's view limits but does not draw them."""
    undrawn = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(1.0, abs(high - low))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                location = tick.get_loc()
                if location is None or not (low - slack <= location <= high + slack):
                    undrawn |= {id(tick.label1), id(tick.label2)}
    return undrawn
