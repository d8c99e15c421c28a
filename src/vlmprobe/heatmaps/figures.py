"""Figures of attribution maps: overlay grids per (dataset, model, setting) and the settings side by side.

Every panel shows the image in gray, the map in a 'jet' colour wash (blue = none, red = the map's
maximum), the annotated box(es) of the panel's label in green, and a white cross at the map's
maximum (the pointing-game point). Titles carry the label, whether it is a true label or the top
false positive, the model's score for it, and the pointing-game hit where there is a box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOX_COLOUR = "#39ff14"
FALSE_POSITIVE_COLOUR = "#ff5c5c"
CAM_ALPHA = 0.45
PANEL_INCHES = 2.1


@dataclass
class MapPanel:
    label: str
    kind: str
    """'true', 'false_positive', or 'absent' (protocol sadman2025 draws every class)."""
    score: float
    cam: np.ndarray
    """(H, W) at the image's size, larger = more attribution."""
    boxes: list[Mapping[str, Any]] = field(default_factory=list)
    """Boxes of this panel's label in this image (drawn over the map)."""
    pointing_hit: float | None = None


@dataclass
class ImageRow:
    sample_id: str
    image: np.ndarray
    """(H, W, 3) uint8."""
    labels: list[str]
    boxes: list[Mapping[str, Any]]
    panels: list[MapPanel]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def draw_boxes(ax, boxes: Sequence[Mapping[str, Any]], colour: str = BOX_COLOUR, names: bool = False) -> None:
    from matplotlib.patches import Rectangle

    for box in boxes:
        x0, y0, x1, y1 = (float(box[k]) for k in ("x0", "y0", "x1", "y1"))
        # pixel (x, y) covers [x - 0.5, x + 0.5] in imshow coordinates; x1/y1 are exclusive
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.3))
        if names:
            ax.text(x0 - 0.5, y0 - 1.5, str(box.get("label", "")), color=colour, fontsize=6, va="bottom")


def draw_overlay(ax, image: np.ndarray, cam: np.ndarray | None, boxes: Sequence[Mapping[str, Any]] = (), title: str = "", mark_max: bool = True) -> None:
    """One panel: gray image, map wash, boxes, maximum marked."""
    gray = image.mean(axis=2) if image.ndim == 3 else image
    ax.imshow(gray, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if cam is not None:
        low, high = float(cam.min()), float(cam.max())
        scaled = (cam - low) / (high - low) if high > low else np.zeros_like(cam)
        ax.imshow(scaled, cmap="jet", alpha=CAM_ALPHA, vmin=0, vmax=1, interpolation="bilinear")
        if mark_max and high > low:
            y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
            ax.plot([x], [y], marker="x", color="white", markersize=6, markeredgewidth=1.8)
    draw_boxes(ax, boxes)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def panel_title(panel: MapPanel) -> str:
    kind = {"true": "true", "false_positive": "top FP"}.get(panel.kind, panel.kind)
    title = f"{panel.label} ({kind}) {panel.score:.2f}"
    if panel.pointing_hit is not None:
        title += "  hit" if panel.pointing_hit >= 0.5 else "  miss"
    return title


def overlay_pages(rows: Sequence[ImageRow], title: str, rows_per_page: int = 8) -> list[Any]:
    """Pages of a grid: one row per image (the image with all its boxes, then one panel per map)."""
    plt = _pyplot()
    pages = []
    for start in range(0, max(len(rows), 1), rows_per_page):
        chunk = list(rows[start : start + rows_per_page])
        n_columns = 1 + max((len(row.panels) for row in chunk), default=0)
        n_rows = max(len(chunk), 1)
        figure, axes = plt.subplots(
            n_rows, n_columns, figsize=(PANEL_INCHES * n_columns, PANEL_INCHES * n_rows + 0.5), squeeze=False, layout="constrained"
        )
        for axes_row in axes:
            for ax in axes_row:
                ax.axis("off")
        for i, row in enumerate(chunk):
            ax = axes[i][0]
            ax.axis("on")
            draw_overlay(ax, row.image, None, row.boxes, f"{row.sample_id}\n{', '.join(row.labels)}", mark_max=False)
            for name_box in row.boxes:
                draw_boxes(ax, [name_box], names=True)
            for j, panel in enumerate(row.panels, start=1):
                ax = axes[i][j]
                ax.axis("on")
                draw_overlay(ax, row.image, panel.cam, panel.boxes, panel_title(panel))
                if panel.kind == "false_positive":
                    for spine in ax.spines.values():
                        spine.set_edgecolor(FALSE_POSITIVE_COLOUR)
                        spine.set_linewidth(1.5)
        page = start // rows_per_page + 1
        n_pages = max(1, -(-len(rows) // rows_per_page))
        figure.suptitle(f"{title} (page {page}/{n_pages})" if n_pages > 1 else title, fontsize=9)
        pages.append(figure)
    return pages


@dataclass
class ComparisonRow:
    sample_id: str
    image: np.ndarray
    label: str
    boxes: list[Mapping[str, Any]]
    """The label's boxes."""
    cams: dict[str, np.ndarray | None]
    """setting -> map at the image's size (None: that setting has no map for this label)."""
    hits: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    """setting -> text after the heading (protocol sadman2025: the notebook's title probability)."""


SETTING_TITLES = {"zs": "zero-shot", "lp": "linear probe", "ft": "fine-tuned"}


def settings_comparison(rows: Sequence[ComparisonRow], settings: Sequence[str], title: str) -> Any:
    """The paper's figure: per (image, true label) row, the image with its box, then each setting's map."""
    plt = _pyplot()
    n_columns = 1 + len(settings)
    n_rows = max(len(rows), 1)
    figure, axes = plt.subplots(
        n_rows, n_columns, figsize=(PANEL_INCHES * n_columns, PANEL_INCHES * n_rows + 0.5), squeeze=False, layout="constrained"
    )
    for axes_row in axes:
        for ax in axes_row:
            ax.axis("off")
    if not rows:
        axes[0][0].text(0.5, 0.5, "no annotated image with a map in every setting", ha="center", va="center", fontsize=8)
    for i, row in enumerate(rows):
        ax = axes[i][0]
        ax.axis("on")
        caption = "annotation" if row.boxes or not row.notes else "no annotation"
        draw_overlay(ax, row.image, None, row.boxes, f"{row.sample_id}\n{row.label} ({caption})", mark_max=False)
        for j, setting in enumerate(settings, start=1):
            cam = row.cams.get(setting)
            ax = axes[i][j]
            ax.axis("on")
            heading = SETTING_TITLES.get(setting, setting)
            hit = row.hits.get(setting)
            if hit is not None:
                heading += "  hit" if hit >= 0.5 else "  miss"
            if setting in row.notes:
                heading += f"\n{row.notes[setting]}"
            draw_overlay(ax, row.image, cam, row.boxes, heading if cam is not None else f"{heading}: no map")
    figure.suptitle(title, fontsize=9)
    return figure
