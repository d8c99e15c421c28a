"""``snakemake --report`` builds a self-contained HTML report that renders in a real browser.

The tiny study (support/tiny_study.py) is run once, its report built, and the report opened in Debian's
headless Chromium (driven over the DevTools pipe, see support/headless_chromium.py). The test clicks
through the report like a reader: the menu's result categories, their subcategories, and the
view button of every result; each figure must load as an image with real pixels and each summary
table must render as an HTML table with the study's numbers in it. Screenshots of a figure and a
table view are checked for content (not a blank page) and kept in the test's temp directory.

Skipped, with the reason, where Chromium is not installed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from support.headless_chromium import BrowserError, HeadlessChromium, find_browser
from support.workflow import snakemake

SUMMARY = "Summary tables"
FIGURE_CATEGORIES = ("UMAP grids", "Heatmaps")

# The report keeps its data in plain <script> assignments: `var categories = {...};`.
REPORT_VARIABLE = r"var {name} = (\{{.*?\}});\s*</script>"


def report_variable(html: str, name: str) -> dict:
    match = re.search(REPORT_VARIABLE.format(name=name), html, flags=re.DOTALL)
    assert match, f"the report has no `var {name}`"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def report(local_run, tmp_path_factory) -> Path:
    workdir = local_run
    path = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(workdir, "--report", str(path), timeout=300)
    return path


def test_report_marks_results_by_category(report):
    html = report.read_text()
    categories = report_variable(html, "categories")
    results = report_variable(html, "results")
    assert SUMMARY in categories, f"no {SUMMARY!r} category: {sorted(categories)}"
    summary_paths = [p for paths in categories[SUMMARY].values() for p in paths]
    assert any(results[p]["mime_type"] == "text/html" for p in summary_paths), (
        f"{SUMMARY!r} holds no HTML table (CSV and Markdown do not render in the report): {summary_paths}"
    )
    figures = [
        p for category in FIGURE_CATEGORIES for paths in categories.get(category, {}).values() for p in paths
    ]
    assert figures, f"no figure in {FIGURE_CATEGORIES}: {sorted(categories)}"
    assert all(results[p]["mime_type"].startswith("image/") for p in figures)
    assert all(results[p]["caption"].strip() for p in results), "every result needs a caption"
    description = re.search(r"var workflow_desc = (\".*?\");", html, flags=re.DOTALL)
    assert description and "vlmprobe" in json.loads(description.group(1)), "the workflow description is missing"


# -- the browser ----------------------------------------------------------------------------------------

CLICK_LINK = """
(() => {
    const link = [...document.querySelectorAll('nav a')].find(a => a.innerText.trim() === %s);
    if (!link) return false;
    link.click();
    return true;
})()
"""
EYE_BUTTONS = "[...document.querySelectorAll('nav table a[iconname=\"eye\"]')]"
# The figure of one result, loaded into the content pane: its natural size, or null until then.
CONTENT_IMAGE = """
(() => {
    const image = document.querySelector('div.grow.justify-center img');
    return image && image.complete && image.naturalWidth > 0 && image.src === results[%s].data_uri
        ? [image.naturalWidth, image.naturalHeight] : null;
})()
"""


def open_report(browser: HeadlessChromium, report: Path) -> None:
    browser.open(report.as_uri())
    browser.wait_for("document.querySelector('#app nav') && document.querySelector('#app nav').innerText.length > 0")


def show_in_menu(browser: HeadlessChromium, label: str, single_category: bool) -> None:
    """Back to the main menu, then click a category there (the only one is called 'Results')."""
    browser.evaluate("app.setView({navbarMode: 'menu'})")
    target = "Results" if single_category else label
    browser.wait_for(CLICK_LINK % json.dumps(target))


def screenshot_has_content(path: Path) -> bool:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        gray = image.convert("L")
        # The right three quarters: the content pane, not the navigation bar.
        width, height = gray.size
        pane = gray.crop((width // 4, 0, width, height))
        return ImageStat.Stat(pane).stddev[0] > 5 and len(pane.getcolors(1 << 16) or range(1 << 16)) > 16


def test_report_renders_tables_and_figures_in_chromium(report, tmp_path):
    executable = find_browser()
    if executable is None:
        pytest.skip("no headless Chromium (Debian package `chromium`); install it with `bash .ci/install-system-deps.sh`")
    html = report.read_text()
    categories = report_variable(html, "categories")
    results = report_variable(html, "results")

    rendered_images: list[str] = []
    rendered_tables: list[str] = []
    table_cells: list[str] = []
    shots: dict[str, Path] = {}
    try:
        browser = HeadlessChromium(executable).__enter__()
    except (BrowserError, OSError) as error:
        pytest.skip(f"Chromium did not start: {error}")
    try:
        open_report(browser, report)
        landing = browser.evaluate("document.body.innerText")
        assert "vlmprobe" in landing, "the workflow description is not on the landing page"
        for category in sorted(categories):
            assert category in landing or len(categories) == 1, f"category {category!r} is not in the menu"
        shots["landing"] = browser.screenshot(tmp_path / "landing.png")

        for category, subcategories in sorted(categories.items()):
            for subcategory, paths in sorted(subcategories.items()):
                show_in_menu(browser, category, single_category=len(categories) == 1)
                if len(subcategories) > 1:
                    browser.wait_for(CLICK_LINK % json.dumps(subcategory))
                count = browser.wait_for(f"{EYE_BUTTONS}.length")
                assert count >= 1, f"{category}/{subcategory}: no result to view"
                for index in range(count):
                    previous = browser.evaluate("app.state.resultPath || null")
                    browser.evaluate(f"{EYE_BUTTONS}[{index}].click()")
                    path = browser.wait_for(
                        f"app.state.resultPath !== {json.dumps(previous)} && app.state.resultPath"
                    )
                    assert path in paths, f"{category}/{subcategory}: the view button showed {path}"
                    mime = results[path]["mime_type"]
                    if mime.startswith("image/"):
                        size = browser.wait_for(CONTENT_IMAGE % json.dumps(path))
                        assert size[0] > 50 and size[1] > 50, f"{path}: image of {size} pixels"
                        rendered_images.append(path)
                        if "figure" not in shots:
                            time.sleep(0.3)
                            shots["figure"] = browser.screenshot(tmp_path / "figure.png")
                    elif mime == "text/html":
                        cells = read_table_in_frame(browser)
                        assert cells, f"{path}: the HTML result shows no table"
                        rendered_tables.append(path)
                        table_cells += cells
                        if "table" not in shots:
                            shots["table"] = browser.screenshot(tmp_path / "table.png")
    finally:
        browser.__exit__(None, None, None)

    assert rendered_tables, f"no table rendered; categories: {categories}"
    assert rendered_images, f"no figure rendered; categories: {categories}"
    # The tables show the study's own rows: its models by name and numbers.
    text = " ".join(table_cells)
    assert "pixels" in text and "vit-tiny" in text, text[:500]
    assert re.search(r"\d", text)
    for name, shot in shots.items():
        assert screenshot_has_content(shot), f"the {name} screenshot ({shot}) looks blank"


def read_table_in_frame(browser: HeadlessChromium, timeout: float = 15) -> list[str]:
    """Text of the table cells inside the report's content iframe (a data: URL document)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in browser.child_frames():
            if not frame.get("url", "").startswith("data:text/html"):
                continue
            context = browser.frame_context(frame["id"])
            cells = browser.evaluate(
                "[...document.querySelectorAll('table td, table th')].map(c => c.innerText.trim())", context
            )
            if cells:
                return cells
        time.sleep(0.2)
    return []


# -- the embedding explorers ------------------------------------------------------------------------------


def test_the_report_links_the_embedding_explorers(report, local_run):
    html = report.read_text()
    categories = report_variable(html, "categories")
    results = report_variable(html, "results")
    assert "Embedding explorer" in categories, sorted(categories)
    paths = [p for paths in categories["Embedding explorer"].values() for p in paths]
    assert [results[p]["mime_type"] for p in paths] == ["text/html"]
    assert "results/explore/index.html" in results[paths[0]]["caption"]
    assert (local_run / "results" / "explore" / "index.html").is_file()


@pytest.mark.skipif(find_browser() is None, reason="Chromium is not installed (.ci/install-system-deps.sh installs it)")
def test_every_explorer_of_the_run_opens_from_its_index(local_run):
    """The run wrote a page per (dataset, model); each, reached by its link on the index, loads from disk without
    a console error and draws every point of its manifest."""
    import pyarrow.parquet as pq

    index = local_run / "results" / "explore" / "index.html"
    links = re.findall(r'<a href="([^"]+\.html)">', index.read_text())
    assert links
    with HeadlessChromium(find_browser()) as browser:
        for link in links:
            page = (index.parent / link).resolve()
            dataset = page.parent.name
            browser.open(page.as_uri())
            browser.wait_for("window.explorer && explorer.drawnCount() > 0")
            rows = pq.read_metadata(local_run / "results" / "manifests" / f"{dataset}.parquet").num_rows
            assert browser.evaluate("explorer.drawnCount()") == browser.evaluate("explorer.n") == rows, link
            assert browser.console_errors() == [], link
