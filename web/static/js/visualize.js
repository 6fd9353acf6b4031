// Feature visualizations computed on demand: one streamed call for many units, a progress bar,
// previews while it optimizes; the web process caches the results, so a second visit is instant.
// A layer with a precomputed atlas (interp-atlas) is answered from it: atlasNote says so.
import { enc, errorBox, h, pythonBlock, show, streamEvents } from "./common.js";

export const VISUAL_PARAMS = ["steps", "seed", "image_size", "restarts", "preset", "parameterization", "objective"];

export function visualParams(params) {
  const out = {};
  for (const name of VISUAL_PARAMS) if (params.get(name)) out[name] = params.get(name);
  return out;
}

// Returns {bar, preview, status} elements and run(channels) -> the final event.
export function visualizer(model, layer, params) {
  const bar = h("progress", { id: "progress", max: 1, value: 0 });
  const status = h("span", { class: "muted", id: "progress-status" }, "");
  const preview = h("img", { class: "big", id: "preview", alt: "preview while optimizing" });
  preview.hidden = true;
  async function run(channels) {
    status.textContent = "starting…";
    const url = `/api/models/${encodeURIComponent(model)}/layers/${encodeURIComponent(layer)}/visualize`;
    const last = await streamEvents(url, { channels, params }, (event) => {
      if (event.type !== "progress") return;
      bar.max = event.total;
      bar.value = event.step;
      status.textContent = event.queued ? `queued (${event.queued})` : `step ${event.step}/${event.total} ${event.stage || ""}`;
      if (event.preview) { preview.src = event.preview; preview.hidden = false; }
    });
    bar.max = 1;
    bar.value = 1;
    status.textContent = last.from_atlas ? `${last.computed.length} unit(s) from the atlas (precomputed by interp-atlas), not computed now`
      : last.computed && last.computed.length ? `computed ${last.computed.length} unit(s)` : "from the explorer's cache";
    bar.dataset.done = "true";
    return last;
  }
  return { bar, status, preview, run };
}

// What a page says about the layer's atlas (d.atlas of the page's JSON): the job's parameters, and
// whether this page is served from it or, with other parameters, a link to the page that is.
export function atlasNote(d, atlasUrl) {
  if (!d.atlas) return null;
  const a = d.atlas;
  const job = Object.entries(a.job).map(([k, v]) => `${k.replace("_", " ")} ${v}`).join(", ");
  const what = `precomputed by interp-atlas (${job}; ${a.units} units stored${a.dataset ? `, top-9 from ${a.dataset}` : ""})`;
  return h("p", { class: "notice", id: "atlas" }, a.serves
    ? `This layer's feature visualizations are ${what}: shown from the atlas, not computed.`
    : [`This layer has an atlas ${what}; these parameters are not its own: `, h("a", { href: atlasUrl }, "show the atlas")]);
}

// "Build the index": BuildIndex of this layer on the dataset the server offers, with progress and cancel.
export function indexButton(model, d) {
  if (!d.index_dataset) return null;
  const bar = h("progress", { id: "index-progress", max: 1, value: 0 });
  const status = h("span", { class: "muted", id: "index-status" });
  const controller = new AbortController();
  const cancel = h("button", { type: "button", id: "index-cancel", onclick: () => controller.abort() }, "cancel");
  const box = h("div", { class: "tools" });
  const start = h("button", { type: "button", id: "index-build", onclick: async () => {
    show(box, bar, status, cancel);
    const url = `/api/models/${enc(model)}/layers/${enc(d.layer.name)}/index`;
    try {
      const last = await streamEvents(url, { dataset: d.index_dataset }, (event) => {
        if (event.type !== "progress") return;
        bar.max = event.total;
        bar.value = event.step;
        status.textContent = event.queued ? `queued (${event.queued})` : `${event.step}/${event.total} ${event.stage || ""}`;
      }, controller.signal);
      show(box, `indexed ${last.images} images in ${last.seconds.toFixed(1)} s — reloading`, pythonBlock(last.python));
      location.reload();
    } catch (err) {
      show(box, err.name === "AbortError" ? h("span", {}, "cancelled") : errorBox(err));
    }
  } }, `Build the index of ${d.layer.name} on ${d.index_dataset}`);
  show(box, start);
  return box;
}
