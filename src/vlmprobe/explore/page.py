"""The explorer page: one self-contained HTML file per (dataset, model), and the index page linking them.

The page is plain HTML, CSS and a small script (``explorer.js``, ``explorer.css`` beside this module) that
draws every point on one ``<canvas>``; the data is inline JSON, the thumbnails are the dataset's sprite
sheets, found by relative path (``thumbnails/sheet_000.jpg``), so the page opens from the file system with
no server and no network. Why no plotting library: see docs/explore.md.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vlmprobe explore">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<header>
  <h1 id="title">{title}</h1><span id="subtitle"></span>
  <label>Colour by <select id="colour-by"></select></label>
  <form id="search-form"><input id="search" type="search" placeholder="sample id" size="22"><button type="submit">Find</button>
    <span id="search-result"></span></form>
  <span class="tools">Drag:
    <label><input type="radio" name="tool" value="box" checked> box</label>
    <label><input type="radio" name="tool" value="lasso"> lasso</label>
    <label><input type="radio" name="tool" value="pan"> pan</label></span>
  <button id="reset" type="button">Reset view</button>
  {back}
</header>
<main>
  <div id="plot-wrap"><canvas id="plot"></canvas><canvas id="overlay"></canvas><div id="tooltip" hidden></div></div>
  <aside>
    <section><h2>Legend</h2><div id="legend"></div></section>
    <section><h2>Selection</h2>
      <p id="selection-summary"></p>
      <p class="hint">Drag on the plot to select (box or lasso); shift-drag pans, the wheel zooms, a double click
      fits the view; click a legend entry to hide it.</p>
      <table id="selection-counts"></table>
      <div id="strip"></div>
      <details><summary>sample ids</summary><textarea id="selection-ids" readonly></textarea></details>
    </section>
    <section id="notes"></section>
  </aside>
</main>
<script type="application/json" id="explore-data">{data}</script>
<script>
{script}
</script>
</body>
</html>
"""


def asset(name: str) -> str:
    return resources.files("vlmprobe.explore").joinpath(name).read_text(encoding="utf-8")


def inline_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can end it early)."""
    # "\/" and "\u0021" are JSON escapes, so the text still parses as the same JSON.
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\u0021--")


def render_page(data: dict[str, Any], index_href: str | None = "../index.html") -> str:
    back = f'<a href="{html.escape(index_href)}">all explorers</a>' if index_href else ""
    return TEMPLATE.format(
        title=html.escape(data["title"]), css=asset("explorer.css"), data=inline_json(data), script=asset("explorer.js"), back=back
    )


def render_index(entries: Sequence[dict[str, Any]], index_path: str | os.PathLike[str]) -> str:
    """The index: one row per dataset, one link per model. ``entries``: ``dataset``, ``model``, ``page`` (a
    path), ``n_points``, ``cell``; links are relative to the index's own folder."""
    folder = Path(index_path).parent
    datasets: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        datasets.setdefault(entry["dataset"], []).append(entry)
    rows = []
    for dataset, items in datasets.items():
        links = " ".join(
            f'<a href="{html.escape(Path(os.path.relpath(item["page"], folder)).as_posix())}">{html.escape(item["model"])}</a>' for item in items
        )
        first = items[0]
        cell = first.get("cell") or {}
        rows.append(
            f"<tr><td>{html.escape(dataset)}</td><td>{first['n_points']:,}</td>"
            f"<td>{cell.get('n_neighbors', '')}, {cell.get('min_dist', '')}</td><td>{links}</td></tr>"
        )
    return INDEX_TEMPLATE.format(rows="\n".join(rows))


INDEX_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vlmprobe: embedding explorers</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: left; }}
a {{ margin-right: 10px; }}
</style>
</head>
<body>
<h1>Embedding explorers</h1>
<p>Each page draws one model's UMAP layout of one dataset in the browser: hover a point to see its image, colour by
label, metadata, nuisance, group or linear-probe correctness, search a sample id, drag a box or lasso to list the
selected images. The pages open from the results folder (no server); they find their thumbnails beside them.</p>
<table>
<tr><th>dataset</th><th>points</th><th>UMAP cell (n_neighbors, min_dist)</th><th>models</th></tr>
{rows}
</table>
</body>
</html>
"""
