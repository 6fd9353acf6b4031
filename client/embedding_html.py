"""One self-contained HTML page for an Embedding map: no network, no CDN, data and thumbnails inline.

The page draws the points on a canvas coloured by class, with a legend whose entries toggle a
class on and off, mouse-wheel zoom and drag to pan (double-click resets), and under the cursor
the nearest point's thumbnail, label and dataset id (thumbnails come from the result's sprite,
inlined as a data URI); ``page.html#point=I`` opens with point I's tooltip shown. The element
``#points`` carries the number of points in ``data-points`` and the number drawn in
``data-drawn``, both written by the page's script (a headless browser reading the DOM sees that
the script ran).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
"""matplotlib's tab10, the server's scatter colours (repeated darker past 10 classes)."""


def class_colour(label: int) -> str:
    if label < 0:
        return "rgb(160,160,160)"
    r, g, b = PALETTE[label % len(PALETTE)]
    shade = 0.6 ** (label // len(PALETTE))
    return f"rgb({int(r * shade)},{int(g * shade)},{int(b * shade)})"


def page(result: Any, *, title: str = "") -> str:
    """The HTML text of ``result`` (an :class:`client.results.EmbeddingResult`)."""
    coords = result.coordinates
    labels = [int(v) for v in result.labels]
    present = sorted(set(labels))
    names = {v: (result.classes[v] if 0 <= v < len(result.classes) else "unlabelled") for v in present}
    data = {
        "x": [round(float(v), 4) for v in coords[:, 0]],
        "y": [round(float(v), 4) for v in coords[:, 1]],
        "label": labels,
        "id": [int(v) for v in result.image_ids],
        "classes": [{"label": v, "name": names[v], "colour": class_colour(v)} for v in present],
        "thumb": {
            "size": int(result.thumbnail_size),
            "columns": int(result.thumbnail_columns),
            "count": int(result.thumbnail_count),
        },
    }
    sprite = (
        "data:image/png;base64," + base64.b64encode(result.thumbnails_png).decode("ascii")
        if result.thumbnails_png
        else ""
    )
    heading = title or (
        f"{result.model} · {result.layer} · {result.dataset} · {result.method} · {len(labels):,} points"
    )
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        _TEMPLATE.replace("__TITLE__", html.escape(heading)).replace("__SPRITE__", sprite).replace("__DATA__", payload)
    )


def write_html(result: Any, path: str | Path, *, title: str = "") -> Path:
    """Write :func:`page` to ``path`` (UTF-8); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(result, title=title), encoding="utf-8")
    return out


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  body { margin: 0; font: 13px sans-serif; background: #fafafa; color: #222; }
  header { padding: 6px 10px; border-bottom: 1px solid #ddd; display: flex; gap: 16px; align-items: center; }
  main { display: flex; }
  canvas#map { background: #fff; cursor: crosshair; display: block; }
  #legend { padding: 8px 12px; min-width: 160px; }
  #legend div { cursor: pointer; padding: 2px 0; user-select: none; }
  #legend div.off { opacity: 0.3; }
  #legend span.dot { display: inline-block; width: 11px; height: 11px; border-radius: 50%; margin-right: 6px; }
  #tip { position: fixed; pointer-events: none; background: #fff; border: 1px solid #999; padding: 4px;
         display: none; font-size: 12px; }
  #tip canvas { display: block; image-rendering: pixelated; margin-bottom: 2px; }
</style>
</head>
<body>
<header><strong>__TITLE__</strong><span id="points" data-points="" data-drawn="">loading</span>
<span>wheel: zoom · drag: pan · double-click: reset · legend: toggle classes</span></header>
<main><canvas id="map" width="800" height="800"></canvas><div id="legend"></div></main>
<div id="tip"><canvas id="thumb" width="84" height="84"></canvas><div id="tiptext"></div></div>
<img id="sprite" alt="" style="display:none" src="__SPRITE__">
<script>
"use strict";
const D = __DATA__;
const N = D.x.length;
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
const W = canvas.width, H = canvas.height, M = 16;
const colour = {}, names = {}, hidden = new Set();
for (const c of D.classes) { colour[c.label] = c.colour; names[c.label] = c.name; }
let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
for (let i = 0; i < N; i++) {
  x0 = Math.min(x0, D.x[i]); x1 = Math.max(x1, D.x[i]); y0 = Math.min(y0, D.y[i]); y1 = Math.max(y1, D.y[i]);
}
const span = Math.max(x1 - x0, y1 - y0) || 1, base = (W - 2 * M) / span;
let view = { scale: 1, dx: 0, dy: 0 };
function sx(i) { return ((D.x[i] - (x0 + x1) / 2) * base) * view.scale + W / 2 + view.dx; }
function sy(i) { return (-(D.y[i] - (y0 + y1) / 2) * base) * view.scale + H / 2 + view.dy; }
const order = Array.from({ length: N }, (_, i) => i);
for (let i = N - 1; i > 0; i--) { const j = (i * 2654435761) % (i + 1); [order[i], order[j]] = [order[j], order[i]]; }
function draw() {
  ctx.clearRect(0, 0, W, H);
  const r = N > 5000 ? 1.5 : 2.5;
  let drawn = 0;
  for (const i of order) {
    if (hidden.has(D.label[i])) continue;
    const px = sx(i), py = sy(i);
    if (px < -r || py < -r || px > W + r || py > H + r) continue;
    ctx.fillStyle = colour[D.label[i]];
    ctx.beginPath(); ctx.arc(px, py, r, 0, 2 * Math.PI); ctx.fill();
    drawn++;
  }
  const el = document.getElementById("points");
  el.dataset.points = String(N); el.dataset.drawn = String(drawn);
  el.textContent = N + " points, " + drawn + " shown";
}
const legend = document.getElementById("legend");
for (const c of D.classes) {
  const row = document.createElement("div");
  row.innerHTML = '<span class="dot"></span>';
  row.firstChild.style.background = c.colour;
  row.appendChild(document.createTextNode(c.name));
  row.dataset.label = String(c.label);
  row.addEventListener("click", () => {
    if (hidden.has(c.label)) { hidden.delete(c.label); row.classList.remove("off"); }
    else { hidden.add(c.label); row.classList.add("off"); }
    draw();
  });
  legend.appendChild(row);
}
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const k = Math.exp(-e.deltaY * 0.0015), mx = e.offsetX - W / 2, my = e.offsetY - H / 2;
  view.dx = mx - (mx - view.dx) * k; view.dy = my - (my - view.dy) * k; view.scale *= k;
  draw();
}, { passive: false });
let drag = null;
canvas.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY }; });
window.addEventListener("mouseup", () => { drag = null; });
canvas.addEventListener("dblclick", () => { view = { scale: 1, dx: 0, dy: 0 }; draw(); });
const tip = document.getElementById("tip"), thumb = document.getElementById("thumb");
const tctx = thumb.getContext("2d"), sprite = document.getElementById("sprite");
tctx.imageSmoothingEnabled = false;
function showTip(best, cx, cy) {
  const t = D.thumb;
  tctx.clearRect(0, 0, thumb.width, thumb.height);
  if (best < t.count && sprite.complete && sprite.naturalWidth) {
    const c = best % t.columns, r = Math.floor(best / t.columns);
    tctx.drawImage(sprite, c * t.size, r * t.size, t.size, t.size, 0, 0, thumb.width, thumb.height);
    thumb.style.display = "block";
  } else { thumb.style.display = "none"; }
  document.getElementById("tiptext").textContent = names[D.label[best]] + " · image " + D.id[best];
  tip.style.left = (cx + 14) + "px"; tip.style.top = (cy + 14) + "px"; tip.style.display = "block";
  tip.dataset.point = String(best);
}
canvas.addEventListener("mousemove", (e) => {
  if (drag) {
    view.dx += e.clientX - drag.x; view.dy += e.clientY - drag.y; drag = { x: e.clientX, y: e.clientY };
    draw(); return;
  }
  let best = -1, bd = 64;
  for (let i = 0; i < N; i++) {
    if (hidden.has(D.label[i])) continue;
    const ddx = sx(i) - e.offsetX, ddy = sy(i) - e.offsetY, d = ddx * ddx + ddy * ddy;
    if (d < bd) { bd = d; best = i; }
  }
  if (best < 0) { tip.style.display = "none"; return; }
  showTip(best, e.clientX, e.clientY);
});
canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
draw();
// "#point=I" in the address shows point I's tooltip as if hovered (for links and headless checks)
const wanted = /^#point=(\d+)$/.exec(location.hash);
if (wanted && +wanted[1] < N) {
  const i = +wanted[1], r = canvas.getBoundingClientRect();
  const show = () => showTip(i, r.left + sx(i), r.top + sy(i));
  if (sprite.complete) show(); else sprite.addEventListener("load", show);
}
</script>
</body>
</html>
"""
