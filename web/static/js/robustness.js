// "/robustness": accuracy against epsilon for a model over a served dataset, one curve per method
// (AttackDataset, streamed, cancellable); the minimal-epsilon distribution; the images flipping
// at each point of the curve. The query holds the settings.
import { app, enc, errorBox, getJSON, h, pythonBlock, query, setQuery, show, streamEvents, title } from "./common.js";

const METHODS = ["fgsm", "bim", "pgd", "deepfool_linf"];

function field(label, input) {
  return h("label", {}, `${label} `, input);
}

function resultView(r) {
  const flipsBox = h("div", { id: "flips" });
  const head = h("tr", {}, h("th", {}, "method"), h("th", {}, "clean"), r.epsilons.map((e) => h("th", {}, `ε ${e}`)),
    h("th", {}, "median minimal ε"), h("th", {}, "not found"));
  const rows = r.curves.map((c) => h("tr", {}, h("td", {}, c.method), h("td", {}, r.clean_accuracy.toFixed(3)),
    c.accuracy.map((a, i) => h("td", {}, h("a", { href: "#flips", class: "flip", "data-method": c.method, onclick: () => {
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
    h("div", { class: "row" }, h("div", { class: "panel" }, h("img", { id: "curve", src: r.curve_png, alt: "accuracy against epsilon" })),
      h("div", {}, h("table", { id: "accuracy" }, head, rows), flipsBox)),
    h("h2", {}, "Minimal ε"), h("div", { class: "row" }, histograms),
    pythonBlock(r.python),
  ];
}

async function main() {
  const params = query();
  let models, datasets;
  try {
    [models, datasets] = await Promise.all([getJSON("/api/models"), getJSON("/api/datasets")]);
  } catch (err) {
    show(app(), title("Robustness"), errorBox(err));
    return;
  }
  const model = h("select", { id: "model" }, models.models.map((m) => h("option", { value: m.name, selected: m.name === params.get("model") }, m.name)));
  const dataset = h("select", { id: "dataset" });
  const fill = () => {
    const fitting = datasets.datasets.filter((d) => d.fits_models.includes(model.value)).sort((a, b) => a.size - b.size);
    show(dataset, fitting.length ? fitting.map((d) => h("option", { value: d.name, selected: d.name === params.get("dataset") }, `${d.name} (${d.size})`))
      : h("option", { value: "" }, "no served dataset fits this model"));
  };
  model.addEventListener("change", fill);
  fill();
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
      status.textContent = "done";
      show(out, resultView(r));
    } catch (err) {
      status.textContent = "";
      show(out, err.name === "AbortError" ? h("p", { id: "cancelled" }, "cancelled") : errorBox(err));
    }
  } }, "run");
  show(app(), title("Robustness"),
    h("div", { class: "panel tools" }, field("model", model), field("dataset", dataset),
      h("span", {}, "methods ", boxes.map((b) => h("label", {}, b, ` ${b.value} `))), field("ε", eps), field("images", limit)),
    h("div", { class: "tools" }, run, cancel, bar, status), out);
  if (params.get("run") === "1") run.click();
}

main();
