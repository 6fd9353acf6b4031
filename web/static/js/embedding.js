// "/embedding": a t-SNE or PCA map of a layer over a served dataset (Embedding, streamed, cancellable,
// cached on the server); with ?image=SHA256 (from the lab) the image is placed on the map; a click on
// a point of the scatter opens its image in the lab.
import { app, downloadLink, errorBox, field, getJSON, h, modelAndDataset, page, pythonBlock, query, setQuery, show, streamEvents, title, unknownChoice } from "./common.js";

// The point nearest the click on the scatter (within 8 pixels of the picture): its image in the lab.
function openPoint(event, r, model) {
  const box = event.target.getBoundingClientRect();
  const scale = event.target.naturalWidth / box.width;
  const [x, y] = [(event.clientX - box.left) * scale, (event.clientY - box.top) * scale];
  let [best, bestD] = [null, 64];
  for (const [px, py, id] of r.points_px) {
    const d = (px - x) ** 2 + (py - y) ** 2;
    if (d < bestD) [best, bestD] = [id, d];
  }
  if (best !== null) location.href = `/lab?model=${encodeURIComponent(model)}&dataset=${encodeURIComponent(r.dataset)}&position=${best}`;
}

async function main() {
  const params = query();
  const picks = await modelAndDataset(params, "Embedding");
  if (!picks) return;
  const { model, dataset, note, refusals } = picks;
  const layer = h("select", { id: "layer" });
  const notices = h("div", { id: "notices" }, refusals);
  const fill = async () => {
    try {
      const d = await getJSON(`/api/models/${encodeURIComponent(model.value)}`);
      // a map needs 2+ features per image (a conv layer's maps are averaged: one a channel)
      const names = d.layers.filter((l) => l.channels >= 2).map((l) => l.name);
      const wanted = params.get("layer") || names[names.length - 2];
      show(layer, names.map((n) => h("option", { value: n, selected: n === wanted }, n)));
      show(notices, refusals, [null, model.value].includes(params.get("model")) ? unknownChoice(layer, params.get("layer"), "layer") : null);
    } catch (err) {
      show(out, errorBox(err));
    }
  };
  model.addEventListener("change", fill);
  const method = h("select", { id: "method" }, ["pca", "tsne"].map((m) => h("option", { value: m, selected: m === (params.get("method") || "pca") }, m)));
  const limit = h("input", { id: "limit", type: "number", min: 1, value: params.get("limit") || "1000" });
  const bar = h("progress", { id: "embedding-progress", max: 1, value: 0 });
  const status = h("span", { class: "muted", id: "embedding-status" });
  const out = h("div", { id: "embedding" });
  const image = params.get("image");
  let controller = null;
  const cancel = h("button", { type: "button", id: "cancel", onclick: () => controller && controller.abort() }, "cancel");
  const run = h("button", { type: "button", id: "run", onclick: async () => {
    // run=1: the link reproduces the map (a cached one answers at once)
    setQuery({ model: model.value, dataset: dataset.value, layer: layer.value, method: method.value, limit: limit.value, run: "1" });
    controller = new AbortController();
    bar.value = 0;
    delete bar.dataset.done;
    show(out);
    try {
      const r = await streamEvents("/api/embedding", { model: model.value, dataset: dataset.value, layer: layer.value,
        method: method.value, limit: Number(limit.value), image }, (event) => {
        if (event.type !== "progress") return;
        bar.max = event.total;
        bar.value = event.step;
        status.textContent = event.queued ? `queued (${event.queued})` : `${event.stage || ""} ${event.step}/${event.total}`;
      }, controller.signal);
      bar.value = bar.max;
      bar.dataset.done = "true";
      const took = r.seconds < 0.1 ? `${Math.round(r.seconds * 1000)} ms` : `${r.seconds.toFixed(1)} s`;
      status.textContent = r.reused ? "from the server's cache" : `computed in ${took}`;
      const placed = r.placed ? [h("h2", {}, "The lab's image on the map"),
        h("p", {}, `placed among ${r.placed.label} images (nearest: ${r.placed.neighbors.join(", ")})`),
        h("div", { class: "row" }, h("div", { class: "panel" }, h("img", { id: "placed", class: "map-plot", src: r.placed.scatter, alt: "the image on the map" }))),
        pythonBlock(r.placed.python)] : [];
      show(out, h("p", {}, `${r.points} images of ${r.dataset}, ${r.layer}, ${r.method}; click a point to open its image in the lab`),
        h("div", { class: "row" },
          h("div", { class: "panel" }, h("img", { id: "scatter", class: "map-plot clickable", src: r.scatter, alt: "the map, coloured by class",
            title: "click a point: its image in the lab", onclick: (e) => openPoint(e, r, model.value) }),
            h("div", { class: "tools" }, downloadLink(r.scatter, `${r.layer}_${r.method}_scatter.png`))),
          h("div", { class: "panel" }, h("img", { id: "atlas", class: "map-plot", src: r.atlas, alt: "the map's images" }),
            h("div", { class: "tools" }, downloadLink(r.atlas, `${r.layer}_${r.method}_atlas.png`)))),
        pythonBlock(r.python), placed);
    } catch (err) {
      status.textContent = "";
      show(out, err.name === "AbortError" ? h("p", { id: "cancelled" }, "cancelled") : errorBox(err));
    }
  } }, "build the map");
  show(app(), title("Embedding"), notices, note,
    image ? h("p", {}, "The lab's image will be placed on the map.") : null,
    h("div", { class: "panel tools" }, field("model", model), field("dataset", dataset), field("layer", layer), field("method", method), field("images", limit)),
    h("div", { class: "tools" }, run, cancel, bar, status), out);
  await fill();
  if (params.get("run") === "1" && !notices.childElementCount) run.click();  // not with what the link did not ask for
}

page(main);
