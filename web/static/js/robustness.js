// "/robustness": accuracy against epsilon for a model over a served dataset, one curve per method
// (AttackDataset, streamed, cancellable); the minimal-epsilon distribution; the images flipping
// at each point of the curve. The query holds the settings.
import { app, enc, errorBox, field, getJSON, h, modelAndDataset, page, pythonBlock, query, setQuery, show, streamEvents, title } from "./common.js";

const METHODS = ["fgsm", "bim", "pgd", "deepfool_linf"];

// One AttackDataset result; ids take `prefix` (the offline results' views sit beside the run's).
function resultView(r, prefix = "") {
  const flipsBox = h("div", { id: `${prefix}flips` });
  const head = h("tr", {}, h("th", {}, "method"), h("th", {}, "clean"), r.epsilons.map((e) => h("th", {}, `ε ${e}`)),
    h("th", {}, "median minimal ε"), h("th", {}, "not found"));
  const rows = r.curves.map((c) => h("tr", {}, h("td", {}, c.method), h("td", {}, r.clean_accuracy.toFixed(3)),
    c.accuracy.map((a, i) => h("td", {}, h("a", { href: `#${prefix}flips`, class: "flip", "data-method": c.method, onclick: () => {
      const point = c.flips[i];
      show(flipsBox, h("p", {}, `${c.method}: ${point.count} image(s) first fail at ε ${point.epsilon}`,
        point.images.length ? ` (dataset positions${point.count > point.images.length ? ", the first " + point.images.length : ""}): ` : "",
        point.images.flatMap((p, j) => [j ? ", " : "", h("a", { class: "to-lab", title: "open it in the lab",
          href: `/lab?model=${enc(query().get("model"))}&dataset=${enc(r.dataset)}&position=${p}&attack=${enc(c.method)}&eps=${point.epsilon}` }, String(p))])));
    } }, a.toFixed(3)))),
    h("td", {}, c.median_minimal === null ? "–" : c.median_minimal.toFixed(4)), h("td", {}, c.not_found)));
  const histograms = r.curves.map((c) => h("div", { class: "panel" }, h("div", {}, `${c.method}: minimal ε per image`),
    c.histogram.counts.length
      ? h("table", {}, c.histogram.counts.map((n, i) => h("tr", {},
          h("td", { class: "mono" }, `${c.histogram.edges[i].toFixed(3)}–${c.histogram.edges[i + 1].toFixed(3)}`), h("td", {}, n))))
      : h("p", { class: "muted" }, "no image flipped")));
  return [
    h("p", {}, `${r.images} images of ${r.dataset}${r.skipped ? ` (${r.skipped} skipped)` : ""}, ${r.norm} ε; click an accuracy to list the images that flip there`),
    h("div", { class: "row" }, h("div", { class: "panel" }, h("img", { id: `${prefix}curve`, src: r.curve_png, alt: "accuracy against epsilon" })),
      h("div", {}, h("table", { id: `${prefix}accuracy` }, head, rows), flipsBox)),
    h("h2", {}, "Minimal ε"), h("div", { class: "row" }, histograms),
    pythonBlock(r.python),
  ];
}

// The results interp-robustness stored for the chosen model and dataset (ListPrecomputed), each
// labelled as offline with the job's parameters.
async function offlineResults(box, model, dataset) {
  show(box);
  if (!model) return;
  try {
    const d = await getJSON(`/api/robustness/stored?model=${enc(model)}&dataset=${enc(dataset)}`);
    if (!d.results.length) return;
    show(box, h("h2", {}, "Offline results (interp-robustness)"), d.results.map((r, i) => h("div", { class: "offline", id: `offline-${i}` },
      h("p", { class: "notice" }, `Computed offline by interp-robustness (engine ${r.engine}), not now: ${r.curves.map((c) => c.method).join(", ")} `,
        `at ε ${r.epsilons.join(", ")} over the first ${r.limit} images${r.true_labels ? "" : " (predicted labels)"}; `,
        Object.entries(r.params).map(([k, v]) => `${k} ${v}`).join(", ")),
      resultView(r, `offline-${i}-`))));
  } catch (err) {
    show(box, errorBox(err));
  }
}

async function main() {
  const params = query();
  const offline = h("div", { id: "offline" });  // the results interp-robustness stored
  const picks = await modelAndDataset(params, "Robustness");
  if (!picks) return;
  const { model, dataset, note, refusals } = picks;
  const refresh = () => offlineResults(offline, model.value, dataset.value);
  model.addEventListener("change", refresh);
  dataset.addEventListener("change", refresh);
  const chosen = (params.get("methods") || "fgsm,pgd").split(",");
  const boxes = METHODS.map((m) => h("input", { type: "checkbox", value: m, checked: chosen.includes(m) }));
  const eps = h("input", { id: "epsilons", value: params.get("eps") || "0.01,0.03,0.05,0.1,0.2", size: 28 });
  const limit = h("input", { id: "limit", type: "number", min: 1, value: params.get("limit") || "200" });
  const bar = h("progress", { id: "robustness-progress", max: 1, value: 0 });
  const status = h("span", { class: "muted" });
  const out = h("div", { id: "robustness" });
  let controller = null;
  const cancel = h("button", { type: "button", id: "cancel", onclick: () => controller && controller.abort() }, "cancel");
  const run = h("button", { type: "button", id: "run", onclick: async () => {
    const methods = boxes.filter((b) => b.checked).map((b) => b.value);
    const epsilons = eps.value.split(",").map((e) => Number(e.trim())).filter((e) => !Number.isNaN(e));
    setQuery({ model: model.value, dataset: dataset.value, methods: methods.join(","), eps: epsilons.join(","), limit: limit.value });
    controller = new AbortController();
    bar.value = 0;
    delete bar.dataset.done;
    show(out);
    try {
      const r = await streamEvents("/api/robustness", { model: model.value, dataset: dataset.value, methods, epsilons, limit: Number(limit.value) },
        (event) => {
          if (event.type !== "progress") return;
          bar.max = event.total;
          bar.value = event.step;
          status.textContent = event.queued ? `queued (${event.queued})` : `${event.step}/${event.total} ${event.stage || ""}`;
        }, controller.signal);
      bar.value = bar.max;
      bar.dataset.done = "true";
      status.textContent = r.precomputed ? "done: a result interp-robustness stored (precomputed), not computed now" : "done";
      show(out, resultView(r));
    } catch (err) {
      status.textContent = "";
      show(out, err.name === "AbortError" ? h("p", { id: "cancelled" }, "cancelled") : errorBox(err));
    }
  } }, "run");
  show(app(), title("Robustness"), refusals, note,
    h("div", { class: "panel tools" }, field("model", model), field("dataset", dataset),
      h("span", {}, "methods ", boxes.map((b) => h("label", {}, b, ` ${b.value} `))), field("ε", eps), field("images", limit)),
    h("div", { class: "tools" }, run, cancel, bar, status), out, offline);
  refresh();
  if (params.get("run") === "1" && !refusals.length) run.click();  // not with what the link did not ask for
}

page(main);
