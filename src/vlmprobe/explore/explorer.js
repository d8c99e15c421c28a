// The embedding explorer page: one canvas, no library, no server (works from file://).
// The page's data (points, fields, colourings, thumbnail sheets) is the JSON in #explore-data; see
// vlmprobe.explore.data. `window.explorer` exposes what the browser tests and the benchmark read.
(function () {
  "use strict";
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("explore-data").textContent);
  const N = D.n;
  const X = Float64Array.from(D.x), Y = Float64Array.from(D.y);
  const SX = new Float32Array(N), SY = new Float32Array(N);
  const canvas = document.getElementById("plot");
  const wrap = document.getElementById("plot-wrap");
  const ctx = canvas.getContext("2d", { alpha: false });
  const overlay = document.getElementById("overlay");
  const overlayCtx = overlay.getContext("2d");
  const tooltip = document.getElementById("tooltip");
  const colourSelect = document.getElementById("colour-by");
  const legendBox = document.getElementById("legend");
  const STRIP_MAX = 300, STRIP_PX = 64, TIP_PX = 128, HOVER_PX = 7, GRID_PX = 16;
  const radius = N > 20000 ? 1.6 : N > 5000 ? 2.2 : N > 1000 ? 3 : 4;
  const round = N <= 5000; // beyond that, squares: a point is two or three pixels wide and fillRect is cheaper

  let colouring = D.colourings[0];
  let hidden = new Set();
  let selected = new Int32Array(0), selectedMask = new Uint8Array(N);
  let highlighted = -1, hovered = -1, drawn = 0;
  let width = 0, height = 0, view = null, drag = null;
  let gridStart = null, gridItems = null, gridW = 0, gridH = 0;
  const timings = { firstDrawMs: null, lastDrawMs: null };

  // A fixed shuffled drawing order, so the last-drawn class does not hide the others.
  const order = new Uint32Array(N);
  for (let i = 0; i < N; i++) order[i] = i;
  let seed = 12345;
  for (let i = N - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const j = seed % (i + 1);
    const t = order[i]; order[i] = order[j]; order[j] = t;
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }

  // -- view: data -> screen ---------------------------------------------------------------------------
  function fitView() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < N; i++) {
      if (X[i] < x0) x0 = X[i]; if (X[i] > x1) x1 = X[i];
      if (Y[i] < y0) y0 = Y[i]; if (Y[i] > y1) y1 = Y[i];
    }
    if (!N) { x0 = y0 = -1; x1 = y1 = 1; }
    const pad = 24, dx = Math.max(x1 - x0, 1e-9), dy = Math.max(y1 - y0, 1e-9);
    view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale: Math.min((width - 2 * pad) / dx, (height - 2 * pad) / dy) };
  }
  const toScreenX = (x) => (x - view.cx) * view.scale + width / 2;
  const toScreenY = (y) => height / 2 - (y - view.cy) * view.scale;
  const toDataX = (px) => (px - width / 2) / view.scale + view.cx;
  const toDataY = (py) => view.cy - (py - height / 2) / view.scale;

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    const firstTime = !view;
    width = wrap.clientWidth; height = wrap.clientHeight;
    for (const c of [canvas, overlay]) { c.width = Math.round(width * dpr); c.height = Math.round(height * dpr); }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    overlayCtx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (firstTime) fitView();
    draw();
  }

  // -- drawing ----------------------------------------------------------------------------------------
  function visible(i) { return !hidden.has(colouring.codes[i]); }

  // Colours as 32-bit pixels (little-endian RGBA), and the same blended 18 % onto white for dimmed points.
  function pixelWord(hex, alpha) {
    const v = parseInt(hex.slice(1), 16), mix = (c) => Math.round(255 - alpha * (255 - c));
    return (255 << 24 | mix(v & 255) << 16 | mix((v >> 8) & 255) << 8 | mix(v >> 16)) >>> 0;
  }
  let image = null, pixels = null;

  // The points. Beyond 5,000 they are written straight into an ImageData buffer (a square of pixels each), which
  // costs a few milliseconds for 28,000 points where one fillRect per point costs a hundred without a GPU.
  function drawPoints() {
    const start = performance.now();
    const codes = colouring.codes, colours = colouring.colours;
    for (let i = 0; i < N; i++) { SX[i] = toScreenX(X[i]); SY[i] = toScreenY(Y[i]); }
    const anySelected = selected.length > 0;
    let count = 0;
    if (round) {
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, width, height);
      const r = radius;
      for (const pass of anySelected ? [0, 1] : [1]) {
        ctx.globalAlpha = pass === 0 ? 0.18 : 1;
        let last = -1;
        for (let k = 0; k < N; k++) {
          const i = order[k], c = codes[i];
          if (hidden.has(c) || (anySelected && selectedMask[i] !== pass)) continue;
          const sx = SX[i], sy = SY[i];
          if (sx < -r || sy < -r || sx > width + r || sy > height + r) continue;
          if (c !== last) { ctx.fillStyle = colours[c]; last = c; }
          ctx.beginPath(); ctx.arc(sx, sy, r, 0, 6.2832); ctx.fill();
          count++;
        }
      }
      ctx.globalAlpha = 1;
    } else {
      const W = canvas.width, H = canvas.height, scale = W / Math.max(width, 1);
      if (!image || image.width !== W || image.height !== H) { image = ctx.createImageData(W, H); pixels = new Uint32Array(image.data.buffer); }
      pixels.fill(0xffffffff);
      const words = colours.map((c) => pixelWord(c, 1)), dimWords = colours.map((c) => pixelWord(c, 0.18));
      const half = Math.max(1, Math.round(radius * scale));
      const off = new Uint8Array(colours.length);
      for (const c of hidden) off[c] = 1;
      for (const pass of anySelected ? [0, 1] : [1]) {
        const passWords = pass === 0 ? dimWords : words;
        for (let k = 0; k < N; k++) {
          const i = order[k], c = codes[i];
          if (off[c] || (anySelected && selectedMask[i] !== pass)) continue;
          const px = (SX[i] * scale + 0.5) | 0, py = (SY[i] * scale + 0.5) | 0;
          if (px < -half || py < -half || px >= W + half || py >= H + half) continue;
          const word = passWords[c];
          const x0 = px - half < 0 ? 0 : px - half, x1 = px + half > W ? W : px + half;
          const y0 = py - half < 0 ? 0 : py - half, y1 = py + half > H ? H : py + half;
          for (let y = y0; y < y1; y++) {
            const row = y * W;
            for (let x = x0; x < x1; x++) pixels[row + x] = word;
          }
          count++;
        }
      }
      ctx.putImageData(image, 0, 0);
    }
    drawn = count;
    buildGrid();
    timings.lastDrawMs = performance.now() - start;
  }

  // What changes while the mouse moves (hover and search rings, the box or lasso being drawn) goes on a second
  // canvas above the points, so moving the mouse never redraws 28,000 points.
  function drawOverlay() {
    overlayCtx.clearRect(0, 0, width, height);
    for (const i of [highlighted, hovered]) {
      if (i < 0) continue;
      overlayCtx.beginPath(); overlayCtx.arc(SX[i], SY[i], radius + 5, 0, 2 * Math.PI);
      overlayCtx.lineWidth = 2; overlayCtx.strokeStyle = "#000"; overlayCtx.stroke();
    }
    if (drag && drag.mode !== "pan" && drag.moved) drawShape();
  }

  function draw() { drawPoints(); drawOverlay(); }

  function drawShape() {
    const g = overlayCtx;
    g.save();
    g.setLineDash([5, 4]); g.lineWidth = 1.2; g.strokeStyle = "#333"; g.fillStyle = "rgba(80,120,200,.08)";
    g.beginPath();
    if (drag.mode === "box") g.rect(drag.x0, drag.y0, drag.x - drag.x0, drag.y - drag.y0);
    else { drag.path.forEach(([px, py], k) => (k ? g.lineTo(px, py) : g.moveTo(px, py))); g.closePath(); }
    g.fill(); g.stroke(); g.restore();
  }

  // A bucket grid over the screen (counting sort), so hovering looks at a few points, not all of them.
  function buildGrid() {
    gridW = Math.max(1, Math.ceil(width / GRID_PX)); gridH = Math.max(1, Math.ceil(height / GRID_PX));
    const cells = new Int32Array(N), counts = new Int32Array(gridW * gridH + 1);
    for (let i = 0; i < N; i++) {
      const gx = Math.floor(SX[i] / GRID_PX), gy = Math.floor(SY[i] / GRID_PX);
      cells[i] = gx < 0 || gy < 0 || gx >= gridW || gy >= gridH || !visible(i) ? -1 : gy * gridW + gx;
      if (cells[i] >= 0) counts[cells[i] + 1]++;
    }
    for (let c = 1; c < counts.length; c++) counts[c] += counts[c - 1];
    gridStart = counts.slice();
    gridItems = new Int32Array(counts[counts.length - 1]);
    const fill = counts.slice();
    for (let i = 0; i < N; i++) if (cells[i] >= 0) gridItems[fill[cells[i]]++] = i;
  }

  function nearest(px, py) {
    const gx = Math.floor(px / GRID_PX), gy = Math.floor(py / GRID_PX);
    let best = -1, bestD = Math.max(HOVER_PX, radius + 3) ** 2;
    for (let y = gy - 1; y <= gy + 1; y++) {
      if (y < 0 || y >= gridH) continue;
      for (let x = gx - 1; x <= gx + 1; x++) {
        if (x < 0 || x >= gridW) continue;
        const cell = y * gridW + x;
        for (let k = gridStart[cell]; k < gridStart[cell + 1]; k++) {
          const i = gridItems[k], d = (SX[i] - px) ** 2 + (SY[i] - py) ** 2;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  // -- thumbnails, tooltip ----------------------------------------------------------------------------
  function thumb(i, px) {
    const T = D.thumbnails, cell = T ? T.cells[i] : -1;
    if (cell < 0) return el("div", { className: "no-thumb", textContent: "no thumbnail" });
    const perSheet = T.columns * T.columns, sheet = Math.floor(cell / perSheet), pos = cell % perSheet;
    const node = el("div", { className: "thumb" });
    node.style.width = node.style.height = px + "px";
    node.style.backgroundImage = 'url("' + T.sheets[sheet] + '")';
    node.style.backgroundSize = T.columns * px + "px auto";
    node.style.backgroundPosition = -(pos % T.columns) * px + "px " + -Math.floor(pos / T.columns) * px + "px";
    node.dataset.sampleId = D.ids[i];
    return node;
  }

  function showTooltip(i, px, py) {
    if (i < 0) { tooltip.hidden = true; return; }
    const rows = D.fields.map((f) => el("tr", {}, [el("td", { textContent: f.name }), el("td", { textContent: f.categories[f.codes[i]] })]));
    tooltip.replaceChildren(thumb(i, TIP_PX), el("div", { className: "tip-id", textContent: D.ids[i] }), el("table", {}, rows));
    tooltip.dataset.sampleId = D.ids[i];
    tooltip.hidden = false;
    const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    tooltip.style.left = (px + 14 + w > width ? Math.max(0, px - 14 - w) : px + 14) + "px";
    tooltip.style.top = (py + 14 + h > height ? Math.max(0, py - 14 - h) : py + 14) + "px";
  }

  // -- legend and colouring -----------------------------------------------------------------------------
  function renderLegend() {
    const counts = new Array(colouring.categories.length).fill(0);
    for (let i = 0; i < N; i++) counts[colouring.codes[i]]++;
    legendBox.replaceChildren(...colouring.categories.map((name, c) => {
      const row = el("div", { className: "legend-row" + (hidden.has(c) ? " off" : ""), title: "click to hide or show" }, [
        el("span", { className: "swatch" }), el("span", { className: "name", textContent: name }), el("span", { className: "count", textContent: counts[c].toLocaleString("en") }),
      ]);
      row.firstChild.style.background = colouring.colours[c];
      row.dataset.category = name;
      row.addEventListener("click", () => { hidden.has(c) ? hidden.delete(c) : hidden.add(c); renderLegend(); draw(); });
      return row;
    }));
  }

  function setColouring(name) {
    const found = D.colourings.find((c) => c.name === name);
    if (!found) throw new Error("no colouring " + name);
    colouring = found; hidden = new Set(); colourSelect.value = name;
    renderLegend(); draw(); if (selected.length) renderSelection();
  }

  // -- selection ----------------------------------------------------------------------------------------
  function insidePolygon(px, py, path) {
    let inside = false;
    for (let a = 0, b = path.length - 1; a < path.length; b = a++) {
      const [xa, ya] = path[a], [xb, yb] = path[b];
      if ((ya > py) !== (yb > py) && px < ((xb - xa) * (py - ya)) / (yb - ya) + xa) inside = !inside;
    }
    return inside;
  }

  function select(indices) {
    selected = Int32Array.from(indices);
    selectedMask = new Uint8Array(N);
    for (const i of selected) selectedMask[i] = 1;
    renderSelection(); draw();
  }

  function finishSelection() {
    const hits = [];
    if (drag.mode === "box") {
      const xa = Math.min(drag.x0, drag.x), xb = Math.max(drag.x0, drag.x), ya = Math.min(drag.y0, drag.y), yb = Math.max(drag.y0, drag.y);
      for (let i = 0; i < N; i++) if (visible(i) && SX[i] >= xa && SX[i] <= xb && SY[i] >= ya && SY[i] <= yb) hits.push(i);
    } else if (drag.path.length > 2) {
      for (let i = 0; i < N; i++) if (visible(i) && insidePolygon(SX[i], SY[i], drag.path)) hits.push(i);
    }
    select(hits);
  }

  function countRows(title, counts) {
    const rows = [...counts.entries()].sort((a, b) => b[1] - a[1]);
    return [el("tr", {}, [el("td", { colSpan: 2 }, [el("b", { textContent: title })])]),
      ...rows.map(([name, n]) => el("tr", { className: "count-row" }, [el("td", { textContent: name }), el("td", { textContent: n.toLocaleString("en") })]))];
  }

  function renderSelection() {
    const summary = document.getElementById("selection-summary"), table = document.getElementById("selection-counts");
    const strip = document.getElementById("strip"), ids = document.getElementById("selection-ids");
    if (!selected.length) {
      summary.textContent = "Nothing selected."; table.replaceChildren(); strip.replaceChildren(); ids.value = ""; return;
    }
    const labels = D.fields[0], labelCounts = new Map(), colourCounts = new Map();
    for (const i of selected) {
      for (const name of D.label_parts[labels.codes[i]]) labelCounts.set(name, (labelCounts.get(name) || 0) + 1);
      const c = colouring.categories[colouring.codes[i]];
      colourCounts.set(c, (colourCounts.get(c) || 0) + 1);
    }
    summary.textContent = selected.length.toLocaleString("en") + " selected" + (selected.length > STRIP_MAX ? " (first " + STRIP_MAX + " shown)" : "");
    const rows = countRows("labels", labelCounts);
    if (colouring.name !== "label") rows.push(...countRows(colouring.name, colourCounts));
    table.replaceChildren(...rows);
    strip.replaceChildren(...Array.from(selected.slice(0, STRIP_MAX), (i) => {
      const node = thumb(i, STRIP_PX);
      node.title = D.ids[i];
      node.addEventListener("click", () => focusPoint(i));
      return node;
    }));
    ids.value = Array.from(selected, (i) => D.ids[i]).join("\n");
  }

  // -- search -------------------------------------------------------------------------------------------
  function focusPoint(i) {
    highlighted = i;
    view.cx = X[i]; view.cy = Y[i];
    draw();
    showTooltip(i, SX[i], SY[i]);
  }

  function search(text) {
    const result = document.getElementById("search-result"), wanted = text.trim();
    if (!wanted) { result.textContent = ""; return -1; }
    let i = D.ids.indexOf(wanted), note = "";
    if (i < 0) {
      const matches = [];
      for (let k = 0; k < N && matches.length < 1000; k++) if (D.ids[k].includes(wanted)) matches.push(k);
      if (matches.length) { i = matches[0]; note = matches.length > 1 ? " (first of " + (matches.length >= 1000 ? "1000+" : matches.length) + " matches)" : ""; }
    }
    if (i < 0) { result.textContent = "no sample id contains \u201c" + wanted + "\u201d"; return -1; }
    result.textContent = D.ids[i] + note;
    focusPoint(i);
    return i;
  }

  // -- events -------------------------------------------------------------------------------------------
  const tool = () => document.querySelector('input[name="tool"]:checked').value;
  const local = (event) => { const r = canvas.getBoundingClientRect(); return [event.clientX - r.left, event.clientY - r.top]; };

  canvas.addEventListener("mousedown", (event) => {
    if (event.button !== 0) return;
    const [px, py] = local(event);
    const mode = event.shiftKey || tool() === "pan" ? "pan" : tool();
    drag = { mode, x0: px, y0: py, x: px, y: py, path: [[px, py]], moved: false, cx: view.cx, cy: view.cy };
    tooltip.hidden = true;
    event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    const [px, py] = local(event);
    if (drag) {
      drag.x = px; drag.y = py;
      if (Math.abs(px - drag.x0) + Math.abs(py - drag.y0) > 3) drag.moved = true;
      if (drag.mode === "pan") { view.cx = drag.cx - (px - drag.x0) / view.scale; view.cy = drag.cy + (py - drag.y0) / view.scale; draw(); return; }
      if (drag.mode === "lasso") drag.path.push([px, py]);
      drawOverlay();
      return;
    }
    if (event.target !== canvas) return;
    const i = nearest(px, py);
    if (i !== hovered) { hovered = i; drawOverlay(); }
    showTooltip(i, px, py);
  });
  window.addEventListener("mouseup", () => {
    if (!drag) return;
    const finished = drag;
    if (finished.moved && finished.mode !== "pan") finishSelection();
    else if (!finished.moved) { highlighted = nearest(finished.x0, finished.y0); if (highlighted < 0) select([]); }
    drag = null;
    if (finished.moved && finished.mode === "pan") draw(); else drawOverlay();
  });
  canvas.addEventListener("mouseleave", () => { if (!drag) { hovered = -1; tooltip.hidden = true; drawOverlay(); } });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [px, py] = local(event), x = toDataX(px), y = toDataY(py);
    view.scale *= Math.exp(-event.deltaY * 0.0015);
    view.cx = x - (px - width / 2) / view.scale; view.cy = y + (py - height / 2) / view.scale;
    tooltip.hidden = true; draw();
  }, { passive: false });
  canvas.addEventListener("dblclick", () => { fitView(); draw(); });
  document.getElementById("reset").addEventListener("click", () => { fitView(); highlighted = -1; select([]); });
  colourSelect.addEventListener("change", () => setColouring(colourSelect.value));
  document.getElementById("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(document.getElementById("search").value); });
  new ResizeObserver(() => resize()).observe(wrap);

  // -- start --------------------------------------------------------------------------------------------
  document.getElementById("title").textContent = D.title;
  document.title = D.title;
  document.getElementById("subtitle").textContent = N.toLocaleString("en") + " points" +
    (D.cell.n_neighbors !== undefined ? " \u00b7 UMAP n_neighbors = " + D.cell.n_neighbors + ", min_dist = " + D.cell.min_dist : "");
  colourSelect.replaceChildren(...D.colourings.map((c) => el("option", { value: c.name, textContent: c.name })));
  document.getElementById("notes").replaceChildren(...(D.notes.length ? [el("h2", { textContent: "Notes" })] : []), ...D.notes.map((text) => el("p", { textContent: text })));
  renderLegend();
  resize();
  renderSelection();
  timings.firstDrawMs = performance.now() - t0;

  window.explorer = {
    n: N,
    timings,
    drawnCount: () => drawn,
    ids: D.ids,
    // Page coordinates (CSS pixels) of point i, for tests that move a real mouse there.
    pagePosition(i) { const r = canvas.getBoundingClientRect(); return [r.left + SX[i], r.top + SY[i]]; },
    indexOf: (id) => D.ids.indexOf(id),
    dataAt(pageX, pageY) { const r = canvas.getBoundingClientRect(); return [toDataX(pageX - r.left), toDataY(pageY - r.top)]; },
    selectedIds: () => Array.from(selected, (i) => D.ids[i]),
    colouringNames: () => D.colourings.map((c) => c.name),
    legend: () => [...legendBox.querySelectorAll(".legend-row")].map((row) => row.dataset.category),
    setColouring,
    search,
    redraw() { draw(); return timings.lastDrawMs; },
  };
})();
