"""The explore stage: thumbnails, the page's data, and the page itself in a real headless browser.

The browser tests open a page written from scratch (support/explorer.py: 120 points in three class blobs,
solid-colour images) from disk in Debian's headless Chromium and drive it with real mouse events through the
DevTools protocol. Skipped, with the reason, where Chromium is not installed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from support.explorer import COLOURS, write_explorer_inputs
from support.headless_chromium import HeadlessChromium, find_browser

from vlmprobe.errors import VlmprobeError
from vlmprobe.explore.data import MAX_CATEGORIES, categorical_colouring, column_colouring, page_data
from vlmprobe.explore.page import inline_json
from vlmprobe.explore.stage import explorer_index, explorer_page, page_summary, thumbnails_for_dataset
from vlmprobe.explore.thumbnails import read_thumbnail_index, write_thumbnails
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.formats.umap_grid import read_cell

N = 120


def current_umask() -> int:
    import os

    umask = os.umask(0)
    os.umask(umask)
    return umask


@pytest.fixture(scope="module")
def explorer(tmp_path_factory) -> dict[str, Path]:
    paths = write_explorer_inputs(tmp_path_factory.mktemp("explore"), n=N)
    thumbnails_for_dataset(paths["manifest"], paths["thumbnails"], size=96, quality=85)
    explorer_page(
        paths["manifest"], paths["coords"], paths["thumbnails"], paths["page"], n_neighbors=15, min_dist=0.1,
        title="demo: a model", predictions_path=paths["predictions"], nuisances=["meta_site"], group="meta_patient",
        index_path=paths["index"],
    )  # fmt: skip
    explorer_index([{"dataset": "demo", "model": "a model", "page": str(paths["page"])}], paths["index"])
    return paths


# -- thumbnails ---------------------------------------------------------------------------------------------


def test_thumbnails_are_sprite_sheets_in_manifest_order(explorer):
    index = read_thumbnail_index(explorer["thumbnails"])
    table, _ = read_manifest(explorer["manifest"])
    assert index.sample_ids == table.column("sample_id").to_pylist()
    assert index.sheets == ["sheet_000.jpg"] and index.per_sheet == 256
    assert explorer["thumbnails"].stat().st_mode & 0o777 == 0o777 & ~current_umask()
    sheet = Image.open(explorer["thumbnails"] / "sheet_000.jpg")
    assert sheet.size == (16 * 96, 8 * 96)  # 120 images: 8 rows of 16
    for i in (0, 1, 2, 37):  # the centre of thumbnail i is its class colour
        row, col = divmod(i, 16)
        pixel = np.asarray(sheet.getpixel((col * 96 + 70, row * 96 + 70)))
        assert np.abs(pixel - COLOURS[i % 3]).max() < 30, (i, pixel)


def test_thumbnails_split_into_sheets_and_fail_without_leaving_a_folder(tmp_path):
    paths = write_explorer_inputs(tmp_path / "in", n=40)
    table, _ = read_manifest(paths["manifest"])
    index = write_thumbnails(table.column("path").to_pylist(), table.column("sample_id").to_pylist(), tmp_path / "t", size=8, columns=4)
    assert index.sheets == [f"sheet_{k:03d}.jpg" for k in range(3)]  # 16 per sheet
    assert Image.open(tmp_path / "t" / "sheet_002.jpg").size == (32, 16)
    broken = table.column("path").to_pylist()[:3] + [str(tmp_path / "missing.png")]
    with pytest.raises(VlmprobeError, match="missing.png"):
        write_thumbnails(broken, [f"x{i}" for i in range(4)], tmp_path / "broken", size=8)
    assert not (tmp_path / "broken").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- the page's data ----------------------------------------------------------------------------------------


def test_page_data_fields_and_colourings(explorer):
    table, meta = read_manifest(explorer["manifest"])
    ids, xy = read_cell(explorer["coords"], 15, 0.1)
    from vlmprobe.formats.predictions import read_probe_predictions

    data = page_data(pl.from_arrow(table), meta["classes"], False, ids, xy, predictions=read_probe_predictions(explorer["predictions"]), nuisances=["meta_site"], group="meta_patient")
    assert data["n"] == N == len(data["x"]) == len(data["ids"])
    names = [c["name"] for c in data["colourings"]]
    assert names == ["label", "linear probe", "nuisance: meta_site", "group: meta_patient", "meta_age", "split"]
    probe = data["colourings"][1]
    outcome = dict(zip(ids, (probe["categories"][c] for c in probe["codes"])))
    assert outcome["s00001"] == "not in the test split"
    assert outcome["s00000"] == "wrong" and outcome["s00005"] == "correct"  # every third test row is wrong
    group = data["colourings"][3]
    assert len(group["categories"]) == MAX_CATEGORIES and group["categories"][-1] == "other (11 values)"
    age = data["colourings"][4]
    assert len(age["categories"]) == 8 and age["categories"][0].startswith("20 to")
    fields = {f["name"]: f for f in data["fields"]}
    assert list(fields) == ["labels", "split", "meta_patient", "meta_site", "meta_age", "linear probe predicted"]
    assert fields["meta_patient"]["categories"][fields["meta_patient"]["codes"][ids.index("s00009")]] == "p0002"


def test_multilabel_pages_colour_by_the_study_linear_probe():
    from vlmprobe.formats.predictions import Predictions

    manifest = pl.DataFrame({"sample_id": ["a", "b", "c"], "labels": [["normal"], ["effusion", "nodule"], ["nodule"]], "split": ["test", "test", "train"]})
    predictions = Predictions(["a", "b"], np.zeros((2, 3)), np.array([[False, False, True], [True, False, False]]), ["effusion", "nodule", "normal"])
    data = page_data(manifest, ["effusion", "nodule", "normal"], True, ["a", "b", "c"], np.zeros((3, 2)), predictions=predictions)
    names = [c["name"] for c in data["colourings"]]
    assert names == ["label (findings)", "label: effusion", "label: nodule", "label: normal", "linear probe", "split"]
    probe = data["colourings"][4]
    assert [probe["categories"][c] for c in probe["codes"]] == ["every label right", "some label wrong", "not in the test split"]
    findings = data["colourings"][0]
    assert [findings["categories"][c] for c in findings["codes"]] == ["normal", "several", "one finding"]
    assert data["label_parts"][data["fields"][0]["codes"][1]] == ["effusion", "nodule"]


def test_colourings_keep_missing_values_apart():
    colouring = categorical_colouring("c", ["b", None, "a", "", "b"])
    assert colouring["categories"] == ["a", "b", "missing"]
    assert colouring["codes"] == [1, 2, 0, 2, 1]
    assert colouring["colours"][-1] == "#b0b0b0"
    numeric = column_colouring("n", [float(v) for v in range(30)] + [None])
    assert numeric["categories"][-1] == "missing" and numeric["codes"][-1] == len(numeric["categories"]) - 1


def test_a_layout_with_unknown_samples_is_refused(explorer):
    table, meta = read_manifest(explorer["manifest"])
    with pytest.raises(VlmprobeError, match="not in the manifest"):
        page_data(pl.from_arrow(table), meta["classes"], False, ["nobody"], np.zeros((1, 2)))


def test_inline_json_cannot_end_the_script_element():
    text = inline_json({"id": "</script><!-- x"})
    assert "</" not in text and "<!--" not in text
    assert json.loads(text) == {"id": "</script><!-- x"}


def test_the_nearest_cell_is_drawn_and_said(explorer, tmp_path):
    page = tmp_path / "p.html"
    entry = explorer_page(explorer["manifest"], explorer["coords"], explorer["thumbnails"], page, n_neighbors=4, min_dist=0.4, title="t")
    assert entry["cell"] == {"n_neighbors": 5, "min_dist": 0.5}
    assert page_summary(page) == {"n_points": N, "cell": {"n_neighbors": 5, "min_dist": 0.5}}
    assert "nearest computed cell" in page.read_text()


def test_index_links_every_page(explorer):
    html = explorer["index"].read_text()
    links = re.findall(r'href="([^"]+)"', html)
    assert links == ["explore/model.html"]
    assert (explorer["index"].parent / links[0]).is_file()


# -- in the browser -----------------------------------------------------------------------------------------

BROWSER = find_browser()
needs_browser = pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (.ci/install-system-deps.sh installs it)")


@pytest.fixture(scope="module")
def page(explorer):
    with HeadlessChromium(BROWSER, width=1300, height=850) as browser:
        browser.open(explorer["page"].resolve().as_uri())
        browser.wait_for("window.explorer && explorer.drawnCount() > 0")
        yield browser


@needs_browser
def test_page_loads_from_disk_without_errors_and_draws_every_point(page, explorer):
    assert page.evaluate("location.protocol") == "file:"
    assert page.console_errors() == []
    table, _ = read_manifest(explorer["manifest"])
    assert page.evaluate("explorer.n") == page.evaluate("explorer.drawnCount()") == table.num_rows == N
    assert page.evaluate("document.getElementById('subtitle').textContent").startswith(f"{N} points")


@needs_browser
def test_hovering_a_point_shows_its_thumbnail_and_sample_id(page, explorer):
    i = page.evaluate("explorer.indexOf('s00037')")
    x, y = page.evaluate(f"explorer.pagePosition({i})")
    page.mouse("mouseMoved", x, y)
    page.wait_for("!document.getElementById('tooltip').hidden")
    tip = page.evaluate(
        """(() => { const t = document.getElementById('tooltip'), thumb = t.querySelector('.thumb');
        return {id: t.querySelector('.tip-id').textContent, text: t.innerText, image: thumb && thumb.style.backgroundImage,
                position: thumb && thumb.style.backgroundPosition}; })()"""
    )
    assert tip["id"] == "s00037"
    assert "class_1" in tip["text"] and "meta_site" in tip["text"] and "train" in tip["text"]
    assert "thumbnails/sheet_000.jpg" in tip["image"]
    assert tip["position"] == f"{-(37 % 16) * 128}px {-(37 // 16) * 128}px"  # cell 37 at the tooltip's 128 px
    # the sheet really loaded (no error logged) and the screenshot shows the thumbnail's green
    assert page.evaluate("new Promise(r => { const i = new Image(); i.onload = () => r(i.naturalWidth); i.onerror = () => r(0); i.src = 'thumbnails/sheet_000.jpg'; })") == 16 * 96
    shot = page.screenshot(explorer["page"].parent / "hover.png")
    box = page.evaluate("(() => { const r = document.querySelector('#tooltip .thumb').getBoundingClientRect(); return [r.left, r.top]; })()")
    pixel = np.asarray(Image.open(shot).convert("RGB").getpixel((int(box[0]) + 100, int(box[1]) + 100)))
    assert np.abs(pixel - COLOURS[1]).max() < 40, pixel
    assert page.console_errors() == []


@needs_browser
def test_changing_the_colouring_changes_the_legend(page):
    assert page.evaluate("explorer.legend()") == ["class_0", "class_1", "class_2"]
    page.evaluate("(() => { const s = document.getElementById('colour-by'); s.value = 'linear probe'; s.dispatchEvent(new Event('change')); })()")
    assert page.evaluate("explorer.legend()") == ["correct", "wrong", "not in the test split"]
    page.evaluate("(() => { const s = document.getElementById('colour-by'); s.value = 'nuisance: meta_site'; s.dispatchEvent(new Event('change')); })()")
    assert page.evaluate("explorer.legend()") == ["east", "north", "south"]
    page.evaluate("explorer.setColouring('label')")


@needs_browser
def test_a_box_selection_returns_the_points_inside(page, explorer):
    # Drag a box around the class_0 blob (x near 0) with real mouse events; expect the ids whose coordinates
    # fall inside the box's corners, converted to data coordinates by the page's own transform.
    ids, xy = read_cell(explorer["coords"], 15, 0.1)
    i = page.evaluate("explorer.indexOf('s00000')")
    cx, cy = page.evaluate(f"explorer.pagePosition({i})")
    left, top, right, bottom = cx - 120, cy - 150, cx + 90, cy + 150
    page.mouse("mouseMoved", left, top)
    page.mouse("mousePressed", left, top, button="left", clickCount=1)
    page.mouse("mouseMoved", (left + right) / 2, (top + bottom) / 2, button="left")
    page.mouse("mouseMoved", right, bottom, button="left")
    page.mouse("mouseReleased", right, bottom, button="left", clickCount=1)
    (x0, y1), (x1, y0) = page.evaluate(f"explorer.dataAt({left}, {top})"), page.evaluate(f"explorer.dataAt({right}, {bottom})")
    expected = sorted(sid for sid, (x, y) in zip(ids, xy) if x0 <= x <= x1 and y0 <= y <= y1)
    assert expected and len(expected) < N
    assert sorted(page.evaluate("explorer.selectedIds()")) == expected
    strip = page.evaluate("[...document.querySelectorAll('#strip .thumb')].map(t => t.title)")
    assert sorted(strip) == expected
    counts = page.evaluate("[...document.querySelectorAll('#selection-counts .count-row')].map(r => r.innerText)")
    assert counts and counts[0].startswith("class_0")
    page.evaluate("document.getElementById('reset').click()")
    assert page.evaluate("explorer.selectedIds()") == []


@needs_browser
def test_a_lasso_selection_returns_the_points_inside(page, explorer):
    ids, xy = read_cell(explorer["coords"], 15, 0.1)
    cx, cy = page.evaluate("explorer.pagePosition(explorer.indexOf('s00001'))")  # class_1, the middle blob
    left, top, right, bottom = cx - 60, cy - 200, cx + 60, cy + 200
    page.evaluate("document.querySelector('input[name=tool][value=lasso]').click()")
    corners = [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]
    page.mouse("mouseMoved", left, top)
    page.mouse("mousePressed", left, top, button="left", clickCount=1)
    for (xa, ya), (xb, yb) in zip(corners, corners[1:]):
        for step in range(1, 6):
            page.mouse("mouseMoved", xa + (xb - xa) * step / 5, ya + (yb - ya) * step / 5, button="left")
    page.mouse("mouseReleased", left, top, button="left", clickCount=1)
    (x0, y1), (x1, y0) = page.evaluate(f"explorer.dataAt({left}, {top})"), page.evaluate(f"explorer.dataAt({right}, {bottom})")
    expected = sorted(sid for sid, (x, y) in zip(ids, xy) if x0 < x < x1 and y0 < y < y1)
    assert expected and len(expected) < N
    assert sorted(page.evaluate("explorer.selectedIds()")) == expected
    page.evaluate("document.querySelector('input[name=tool][value=box]').click(); document.getElementById('reset').click()")


@needs_browser
def test_searching_a_sample_id_finds_it(page):
    page.evaluate("(() => { document.getElementById('search').value = 's00042'; document.getElementById('search-form').requestSubmit(); })()")
    assert page.evaluate("document.getElementById('tooltip').dataset.sampleId") == "s00042"
    assert page.evaluate("explorer.search('no-such-id')") == -1
    assert "no sample id" in page.evaluate("document.getElementById('search-result').textContent")
    assert page.console_errors() == []


@needs_browser
def test_a_large_page_draws_every_point_as_pixels_and_hovers(tmp_path):
    n = 6000  # beyond 5,000 points the page writes pixels instead of drawing circles
    paths = write_explorer_inputs(tmp_path, n=n, image_px=8)
    thumbnails_for_dataset(paths["manifest"], paths["thumbnails"], size=16, quality=80)
    explorer_page(paths["manifest"], paths["coords"], paths["thumbnails"], paths["page"], n_neighbors=15, min_dist=0.1, title="large")
    with HeadlessChromium(BROWSER, width=1200, height=800) as browser:
        browser.open(paths["page"].resolve().as_uri())
        browser.wait_for("window.explorer && explorer.drawnCount() > 0")
        assert browser.evaluate("explorer.drawnCount()") == n
        i = browser.evaluate("explorer.indexOf('s04321')")
        x, y = browser.evaluate(f"explorer.pagePosition({i})")
        browser.mouse("mouseMoved", x, y)
        browser.wait_for("!document.getElementById('tooltip').hidden")
        # points overlap at this density: the tooltip shows the point nearest the cursor, within a pixel of it
        shown = browser.evaluate("document.getElementById('tooltip').dataset.sampleId")
        sx, sy = browser.evaluate(f"explorer.pagePosition(explorer.indexOf('{shown}'))")
        assert abs(sx - x) <= 1.5 and abs(sy - y) <= 1.5
        # the pixel under the point is its class colour (class_0 is drawn in tab10 blue)
        pixel = browser.evaluate(
            f"(() => {{ const c = document.getElementById('plot'), r = c.getBoundingClientRect();"
            f" const d = c.getContext('2d').getImageData(({sx} - r.left) * devicePixelRatio, ({sy} - r.top) * devicePixelRatio, 1, 1).data; return [d[0], d[1], d[2]]; }})()"
        )
        assert pixel in ([31, 119, 180], [255, 127, 14], [44, 160, 44]), pixel  # a class colour, drawn opaque
        assert browser.console_errors() == []
