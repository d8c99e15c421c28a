"""Benchmark: an explorer page of 28,000 points, written and drawn in headless Chromium, against a 1,000-point page.

Data (built in, no downloads): tests/support/explorer.py's synthetic dataset (solid-colour 24 x 24 images in an
.npz, three class blobs, metadata columns, linear-probe predictions for every fifth row), at ``--points`` rows
(default 28,000, the size the issue names) and at 1,000 rows as the baseline, both in the same run on the same
machine. For each size:

* ``thumbnails``: the sprite sheets of every image (96 px), once per dataset;
* ``page``: writing the HTML page (data from the manifest, the UMAP cell and the predictions);
* ``load``: navigation to the first complete draw in Chromium (file://, ``--headless``, software rendering);
* ``first draw``: the page's own script, from parsing the data to the first drawn frame;
* ``redraw``: the mean of 20 full redraws (what a zoom, pan or recolour costs);
* ``hover``: a real mouse move over a point until its tooltip shows (the mean of 20).

The last line reads ``explore 28,000 points: first draw <ms>, redraw <ms> (<ratio>x the 1,000-point page), hover <ms>``.
Chromium runs without a GPU here; a desktop browser draws faster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.explorer import write_explorer_inputs  # noqa: E402
from support.headless_chromium import HeadlessChromium, find_browser  # noqa: E402

from vlmprobe.explore.stage import explorer_page, thumbnails_for_dataset  # noqa: E402


def measure(folder: Path, n: int, browser_path: str) -> dict[str, float]:
    paths = write_explorer_inputs(folder, n=n)
    start = time.perf_counter()
    thumbnails_for_dataset(paths["manifest"], paths["thumbnails"], size=96, quality=85)
    thumbnails = time.perf_counter() - start
    start = time.perf_counter()
    explorer_page(paths["manifest"], paths["coords"], paths["thumbnails"], paths["page"], n_neighbors=15, min_dist=0.1,
                  title=f"bench: {n} points", predictions_path=paths["predictions"], nuisances=["meta_site"], group="meta_patient")  # fmt: skip
    page = time.perf_counter() - start
    with HeadlessChromium(browser_path, width=1400, height=900) as browser:
        start = time.perf_counter()
        browser.open(paths["page"].resolve().as_uri())
        browser.wait_for("window.explorer && explorer.drawnCount() > 0", timeout=120)
        load = time.perf_counter() - start
        assert browser.evaluate("explorer.drawnCount()") == n, "not every point was drawn"
        first = browser.evaluate("explorer.timings.firstDrawMs")
        redraws = [browser.evaluate("explorer.redraw()") for _ in range(20)]
        hovers = []
        for k in range(20):
            i = (k * 7919) % n
            browser.mouse("mouseMoved", 5, 5)  # off every point first
            x, y = browser.evaluate(f"explorer.pagePosition({i})")
            start = time.perf_counter()
            browser.mouse("mouseMoved", x, y)
            browser.wait_for("!document.getElementById('tooltip').hidden", timeout=10)
            hovers.append((time.perf_counter() - start) * 1000)
        errors = browser.console_errors()
        assert not errors, errors
    size_mb = paths["page"].stat().st_size / 1e6
    sheets = len(list(paths["thumbnails"].glob("sheet_*.jpg")))
    return {"thumbnails_s": thumbnails, "page_s": page, "load_s": load, "first_ms": first, "redraw_ms": statistics.mean(redraws),
            "hover_ms": statistics.median(hovers), "page_mb": size_mb, "sheets": sheets}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=28_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        sys.exit("Chromium is not installed (.ci/install-system-deps.sh installs it)")
    with tempfile.TemporaryDirectory() as scratch:
        results = {n: measure(Path(scratch) / str(n), n, browser) for n in (args.baseline, args.points)}
    print(f"{'points':>8} {'thumbnails s':>13} {'page s':>7} {'page MB':>8} {'sheets':>7} {'load s':>7} {'first draw ms':>14} {'redraw ms':>10} {'hover ms':>9}")
    for n, r in results.items():
        print(f"{n:>8,} {r['thumbnails_s']:>13.1f} {r['page_s']:>7.2f} {r['page_mb']:>8.2f} {r['sheets']:>7} {r['load_s']:>7.2f} {r['first_ms']:>14.0f} {r['redraw_ms']:>10.1f} {r['hover_ms']:>9.1f}")
    big, small = results[args.points], results[args.baseline]
    print(
        f"explore {args.points:,} points: first draw {big['first_ms']:.0f} ms, redraw {big['redraw_ms']:.1f} ms "
        f"({big['redraw_ms'] / max(small['redraw_ms'], 1e-3):.1f}x the {args.baseline:,}-point page), hover {big['hover_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
