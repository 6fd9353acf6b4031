// "/lab": an uploaded image (the URL holds its sha256 and the view's settings), or a dataset image
// (dataset=D&position=N): top classes, every layer's activation maps (click one: its unit page),
// saliency as an overlay, and an adversarial example with an epsilon slider.
import { datasetBrowser } from "./lab_data.js";
import { dfiView, dreamView, drawPad, neighborsView } from "./lab_more.js";
import { app, defaultModel, fill, show, downloadLink, enc, errorBox, getJSON, h, postJSON, page, pythonBlock, query, setQuery, title, unknownChoice, weightsSlot } from "./common.js";

const METHODS = ["gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "guided_backprop", "grad_cam"];
const ATTACKS = ["fgsm", "bim", "pgd"];

const state = { models: [], datasets: [] };

function section(id, heading) {
  const body = h("div", { id });
  return [h("h2", {}, heading), body];
}

async function upload(file, status) {
  show(status, `uploading ${file.name}…`);
  try {
    const { image } = await postJSON("/api/lab/upload", file, file.type || "application/octet-stream");
    setQuery({ image, dataset: null, position: null });
    show(status, "");
    await analyse();
  } catch (err) {
    show(status, errorBox(err));
  }
}

function chooser() {
  const status = h("div", { id: "upload-status" });
  const input = h("input", { type: "file", id: "file", accept: "image/*", onchange: () => input.files[0] && upload(input.files[0], status) });
  const drop = h("div", { id: "drop" }, "Drop an image here, or ", input);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) upload(file, status);
  });
  const select = h("select", { id: "model", onchange: () => { setQuery({ model: select.value }); render(); } },
    state.models.map((m) => h("option", { value: m.name, selected: m.name === currentModel() }, m.name)));
  const info = state.models.find((m) => m.name === currentModel());
  const pad = drawPad(info ? info.input_shape : [1, 28, 28], (file) => upload(file, status));
  const browser = datasetBrowser(currentModel(), state.datasets, (dataset, position) => {
    setQuery({ image: null, dataset, position });
    analyse();
  });
  return h("div", { class: "panel" }, unknownChoice(select, query().get("model"), "model"),
    h("div", { class: "tools" }, h("label", { for: "model" }, "model"), select), weightsSlot(currentModel(), state.models), drop, pad, browser, status);
}

function currentModel() {
  const wanted = query().get("model");
  if (wanted) return wanted;
  return defaultModel(state.models);
}

// A dataset image named by the URL (dataset=D&position=N), loaded into the lab's cache for the model.
async function fromDataset(model, results) {
  const dataset = query().get("dataset");
  const position = query().get("position");
  if (!dataset || position === null) return null;
  show(results, h("p", { class: "muted" }, `loading ${dataset} #${position}…`));
  try {
    return await postJSON(`/api/lab/datasets/${enc(dataset)}/images/${enc(position)}?model=${enc(model)}`, {});
  } catch (err) {
    show(results, errorBox(err));
    return undefined;
  }
}

async function analyse() {
  const model = currentModel();
  const results = document.getElementById("results");
  const source = query().get("image") ? null : await fromDataset(model, results);
  if (source === undefined) return;
  const image = source ? source.image : query().get("image");
  if (!image) {
    show(results, h("p", { class: "muted" }, "Choose an image to start."));
    return;
  }
  setQuery({ model });
  const [classesH, classes] = section("classes", "Top classes");
  const [satH, sal] = section("saliency", "Saliency");
  const [advH, adv] = section("adversarial", "Adversarial example");
  const [mapsH, maps] = section("maps", "Activation maps (click a map: its unit page)");
  const [nearH, near] = section("nearest", "Nearest dataset images");
  const [dreamH, dream] = section("dream", "DeepDream");
  const [dfiH, dfi] = section("dfi", "Deep feature interpolation");
  show(results, classesH, classes, satH, sal, advH, adv, mapsH, maps, nearH, near, dreamH, dream, dfiH, dfi);
  show(classes, h("p", { class: "muted" }, "classifying…"));
  let d;
  try {
    d = await getJSON(`/api/lab/${enc(image)}/analysis?model=${enc(model)}`);
  } catch (err) {
    show(classes, errorBox(err));
    return;
  }
  const inputUrl = `/api/lab/images/${enc(image)}`;
  show(classes, h("div", { class: "row" },
    h("div", { class: "panel" }, h("img", { class: "big", id: "input", src: d.input, alt: "the model's input" }),
      h("div", { class: "tools" }, h("a", { href: inputUrl, download: "image.png" }, source ? "download the dataset image" : "download the uploaded image"), downloadLink(d.input, "input.png")),
      h("a", { id: "to-embedding", href: `/embedding?model=${enc(d.model)}&image=${enc(image)}` }, "place it on an embedding map"),
      source ? h("p", { id: "true-class" }, `${source.dataset} #${source.position}, true class `, h("b", {}, source.label)) : null),
    h("ol", { id: "predictions" }, d.predictions.map((p, i) => h("li", { class: i === 0 ? "pred" : "" },
      `${p.label} — ${(100 * p.probability).toFixed(1)}%`)))), pythonBlock(source && source.python, "copy as Python: the dataset image"),
    pythonBlock(d.python));
  show(maps, ...d.layers.map((l) => h("div", {},
    h("div", {}, h("a", { href: `/models/${enc(d.model)}/layers/${enc(l.layer)}` }, l.layer),
      h("span", { class: "muted" }, ` (${l.maps.length} of ${l.channels} units, most active first)`)),
    h("div", { class: "maps" }, l.maps.map((m) => h("a", { href: `/models/${enc(d.model)}/layers/${enc(l.layer)}/units/${m.unit}?image=${enc(image)}`, title: `unit ${m.unit}`,
      // the unit page's "back to the lab" returns to this view as it is when clicked (dataset image, method, ε)
      onclick: (e) => {
        const url = new URL(e.currentTarget.href);
        url.searchParams.set("back", location.pathname + location.search);
        e.currentTarget.href = url.href;
      } },
      h("img", { src: m.png, alt: `${l.layer} unit ${m.unit}`, class: "map", "data-unit": m.unit })))))),
    pythonBlock(d.python_activations));
  saliencyView(sal, image, d.model);
  const layerNames = d.layers.map((l) => l.layer);
  neighborsView(near, image, d.model, layerNames);
  dreamView(dream, image, d.model, layerNames);
  dfiView(dfi, image, d.model, d.labels, d.predictions, state.models);
  attackView(adv, image, d.model, d.input);
}

function saliencyView(where, image, model) {
  const picker = h("select", { id: "method" }, METHODS.map((m) => h("option", { value: m, selected: m === (query().get("method") || "gradient") }, m)));
  const out = h("div", {});
  async function run() {
    setQuery({ method: picker.value });
    await fill(out, "computing…", `/api/lab/${enc(image)}/saliency?model=${enc(model)}&method=${enc(picker.value)}`, (s) => [
      h("div", { class: "row" },
        h("div", { class: "panel" }, h("img", { class: "big", id: "overlay", src: s.overlay, alt: "saliency overlay" }),
          h("div", { class: "tools" }, downloadLink(s.overlay, `saliency_${s.method}.png`))),
        h("p", {}, `explaining ${s.target ? s.target.label : "the predicted class"} with ${s.method}`)), pythonBlock(s.python)]);
  }
  picker.addEventListener("change", run);
  show(where, unknownChoice(picker, query().get("method"), "method"),
    h("div", { class: "tools" }, h("label", { for: "method" }, "method"), picker), out);
  run();
}

// input: the model's input (preprocessed), what the attack perturbs (not the uploaded file).
function attackView(where, image, model, input) {
  const params = query();
  const slider = h("input", { type: "range", id: "eps", min: "0.005", max: "0.5", step: "0.005", value: params.get("eps") || "0.01" });
  const method = h("select", { id: "attack" }, ATTACKS.map((m) => h("option", { value: m, selected: m === (params.get("attack") || "fgsm") }, m)));
  const label = h("span", { id: "eps-value" }, slider.value);
  const out = h("div", {});
  let pending = 0;
  async function run() {
    const ticket = ++pending;
    label.textContent = `ε = ${Number(slider.value).toFixed(3)}`;
    setQuery({ eps: slider.value, attack: method.value });
    try {
      const a = await getJSON(`/api/lab/${enc(image)}/attack?model=${enc(model)}&eps=${enc(slider.value)}&method=${enc(method.value)}`);
      if (ticket !== pending) return; // a newer slider position is on its way
      show(out, h("div", { class: "row" },
        h("div", { class: "panel" }, h("div", {}, "original (the model's input)"), h("img", { class: "big", id: "original-img", src: input, alt: "original" }),
          h("div", { class: "pred", id: "original-pred" }, `${a.original.label} ${(100 * a.original.probability).toFixed(1)}%`)),
        h("div", { class: "panel" }, h("div", {}, `adversarial (${a.method}, ε ${a.epsilon.toFixed(3)})`),
          h("img", { class: "big", id: "adversarial-img", src: a.adversarial_png, alt: "adversarial" }),
          h("div", { class: "pred", id: "adversarial-pred" }, `${a.adversarial.label} ${(100 * a.adversarial.probability).toFixed(1)}%`),
          h("div", { class: "tools" }, downloadLink(a.adversarial_png, `adversarial_eps${a.epsilon}.png`))),
        h("div", { class: "panel" }, h("div", {}, "perturbation"), h("img", { class: "big", src: a.perturbation_png, alt: "perturbation" }))),
      pythonBlock(a.python));
    } catch (err) {
      if (ticket === pending) show(out, errorBox(err));
    }
  }
  const closest = h("div", { id: "closest" });
  const find = h("button", { type: "button", id: "closest-failure", onclick: () => fill(closest,
    "searching the smallest ε on the 8-bit grid…", `/api/lab/${enc(image)}/closest-failure?model=${enc(model)}`, (c) => [
      c.found
        ? h("div", { class: "row" }, h("div", { class: "panel" },
            h("div", {}, `closest failing image (${c.method}): ε = ${c.level}/255 = ${c.epsilon.toFixed(4)}`),
            h("img", { class: "big", id: "closest-img", src: c.adversarial_png, alt: "closest failing image" }),
            h("div", { class: "pred", id: "closest-pred" }, `${c.adversarial.label} ${(100 * c.adversarial.probability).toFixed(1)}%`),
            h("div", { class: "tools" }, downloadLink(c.adversarial_png, "closest_failure.png"))))
        : h("p", {}, `no failing image up to ε = ${c.params.max_epsilon}`),
      pythonBlock(c.python)]) }, "closest failing image");
  slider.addEventListener("change", run);
  slider.addEventListener("input", () => { label.textContent = `ε = ${Number(slider.value).toFixed(3)}`; });
  method.addEventListener("change", run);
  const wantedEps = params.get("eps");
  const epsRefused = wantedEps !== null && Number(wantedEps) !== Number(slider.value)
    ? errorBox({ code: "OUT_OF_RANGE", message: `ε ${wantedEps} is not in ${slider.min}..${slider.max}; showing ${slider.value} instead`, field: "eps" })
    : null;  // the slider clamps (and rounds to its step) what it cannot show
  show(where, unknownChoice(method, params.get("attack"), "attack"), epsRefused,
    h("div", { class: "tools" }, h("label", { for: "eps" }, "ε"), slider, label, method, find), out, closest);
  run();
}

function render() {
  show(app(), title("Lab"), chooser(), h("div", { id: "results" }));
  return analyse();
}

async function main() {
  try {
    const [models, datasets] = await Promise.all([getJSON("/api/models"), getJSON("/api/datasets")]);
    [state.models, state.datasets] = [models.models, datasets.datasets];
  } catch (err) {
    show(app(), title("Lab"), errorBox(err));
    return;
  }
  await render();
}

page(main);
