// Feature visualizations computed on demand: one streamed call for many units, a progress bar,
// previews while it optimizes; the web process caches the results, so a second visit is instant.
import { h, streamEvents } from "./common.js";

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
    status.textContent = last.computed && last.computed.length ? `computed ${last.computed.length} unit(s)` : "from the explorer's cache";
    bar.dataset.done = "true";
    return last;
  }
  return { bar, status, preview, run };
}
