// The lab's further views: a drawing pad, the nearest dataset images in a layer, DeepDream and deep
// feature interpolation (both streamed with previews).
import { downloadLink, enc, errorBox, fill, getJSON, h, pythonBlock, query, setQuery, show, streamEvents } from "./common.js";

// The layer the URL names when this model has it (a layer of the model chosen before does not
// carry over), else the view's default.
function layerPicker(id, layers, wanted, fallback) {
  const chosen = layers.includes(wanted) ? wanted : fallback;
  return h("select", { id }, layers.map((l) => h("option", { value: l, selected: l === chosen }, l)));
}

// A canvas to draw on (white on black, as Fashion-MNIST); "use the drawing" hands a PNG of the
// model's input size to onImage(blob).
export function drawPad(inputShape, onImage) {
  const [, height, width] = inputShape.length === 3 ? inputShape : [1, 28, 28];
  const canvas = h("canvas", { id: "pad", width: 280, height: 280, class: "pad" });
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; ctx.beginPath(); ctx.moveTo(...at(e)); });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...at(e));
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 22;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.stroke();
  });
  for (const name of ["pointerup", "pointerleave"]) canvas.addEventListener(name, () => { drawing = false; });
  const use = h("button", { type: "button", id: "use-drawing", onclick: () => {
    const small = h("canvas", { width, height });
    const sctx = small.getContext("2d");
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(canvas, 0, 0, width, height);
    small.toBlob((blob) => onImage(new File([blob], "drawing.png", { type: "image/png" })), "image/png");
  } }, `use the drawing (${width}×${height})`);
  return h("details", { class: "panel" }, h("summary", {}, "or draw one"), canvas,
    h("div", { class: "tools" }, use, h("button", { type: "button", onclick: clear }, "clear")));
}

// Any layer of the model serves as the feature space (fully connected ones too), not only those
// with activation maps: its catalogue, else the layers the lab shows.
export async function neighborsView(where, image, model, layers) {
  let names = layers;
  let fallback = layers[layers.length - 1];
  try {
    const d = await getJSON(`/api/models/${enc(model)}`);
    names = d.layers.map((l) => l.name);
    fallback = names[Math.max(0, names.length - 2)];  // the penultimate layer: the logits' input
  } catch (err) { /* the lab's layers */ }
  if (!where.isConnected) return;  // the lab moved on (another model or image) while the catalogue came
  const picker = layerPicker("neighbors-layer", names, query().get("nlayer"), fallback);
  const out = h("div", {});
  async function run() {
    setQuery({ nlayer: picker.value });
    await fill(out, "searching…", `/api/lab/${enc(image)}/neighbors?model=${enc(model)}&layer=${enc(picker.value)}`, (n) => n.notice
      ? h("div", { class: "notice" }, n.notice)
      : [h("p", { class: "muted" }, `${n.dataset}, ${n.metric} distance`),
        h("div", { class: "grid", id: "neighbors" }, n.neighbors.map((e) => h("div", { class: "unit-card" },
          h("a", { href: `/lab?model=${enc(model)}&dataset=${enc(n.dataset)}&position=${e.image_id}`, title: "open it in the lab" },
            h("img", { class: "pixel", src: e.png, alt: `neighbour ${e.image_id}` })),
          h("div", {}, `${e.label} · ${e.distance.toFixed(3)}`), h("div", { class: "muted" }, `image ${e.image_id}`)))),
        pythonBlock(n.python)]);
  }
  picker.addEventListener("change", run);
  show(where, h("div", { class: "tools" }, h("label", { for: "neighbors-layer" }, "layer"), picker), out);
  run();
}

function previewImage(id, alt) {
  const img = h("img", { class: "big", id, alt });
  img.hidden = true;
  return img;
}

// A button running one streamed call (request() -> [url, body]): the bar follows its progress and
// the preview its previews; then done(result), or its error in out.
function streamButton(id, text, bar, preview, out, request, done) {
  const button = h("button", { type: "button", id, onclick: async () => {
    button.disabled = true;
    bar.value = 0;
    delete bar.dataset.done;
    try {
      const [url, body] = request();
      const last = await streamEvents(url, body, (event) => {
        if (event.type !== "progress") return;
        bar.max = event.total;
        bar.value = event.step;
        if (event.preview) { preview.src = event.preview; preview.hidden = false; }
      });
      bar.value = bar.max;
      bar.dataset.done = "true";
      done(last);
      preview.hidden = false;
    } catch (err) {
      show(out, errorBox(err));
    } finally {
      button.disabled = false;
    }
  } }, text);
  return button;
}

export function dreamView(where, image, model, layers) {
  const picker = layerPicker("dream-layer", layers, query().get("dlayer"), layers[Math.floor(layers.length / 2)]);
  const bar = h("progress", { id: "dream-progress", max: 1, value: 0 });
  const preview = previewImage("dream-img", "DeepDream");
  const out = h("div", {});
  const start = streamButton("dream-start", "dream", bar, preview, out, () => {
    setQuery({ dlayer: picker.value });
    return [`/api/lab/${enc(image)}/dream`, { model, layer: picker.value, params: {} }];
  }, (last) => {
    preview.src = last.png;
    show(out, h("p", {}, last.gains.map((g) => `${g.layer} ×${g.ratio.toFixed(2)}`).join(", ")),
      h("div", { class: "tools" }, downloadLink(last.png, `dream_${picker.value}.png`)), pythonBlock(last.python));
  });
  show(where, h("div", { class: "tools" }, h("label", { for: "dream-layer" }, "layer"), picker, start, bar),
    h("div", { class: "panel" }, preview), out);
}

// Deep feature interpolation (Upchurch et al.): the image moved in feature space from one class's
// mean features towards another's, one image per alpha.
export function dfiView(where, image, model, labels, predictions, models) {
  const info = models.find((m) => m.name === model);
  if (info && !info.class_sets) {
    // Class-name sets are drawn from the model's training set, which the server holds for the
    // models trained in this repo (or named by a model card): say so instead of offering classes
    // the server would refuse.
    const able = models.filter((m) => m.class_sets).map((m) => m.name);
    show(where, h("p", { class: "notice", id: "dfi-unavailable" },
      `Interpolating between two classes draws images of each from the model's training set, which the server samples `,
      able.length ? `for ${able.join(", ")} but not for ${model}` : `for no model served here`,
      `. For ${model}, give two sets of your own images, or a target image, through the SDK or the CLI: `,
      h("code", {}, `interp interpolate ${model} image.png --positive DIR --negative DIR -o out/`), "."));
    return;
  }
  const params = query();
  const top = predictions.length ? predictions[0].label : labels[0];
  const second = predictions.find((p) => p.label !== top);
  const classPicker = (id, wanted) => h("select", { id }, labels.map((l) => h("option", { value: l, selected: l === wanted }, l)));
  const from = classPicker("dfi-from", params.get("dfi_from") || top);
  const to = classPicker("dfi-to", params.get("dfi_to") || (second ? second.label : labels.find((l) => l !== top)));
  const bar = h("progress", { id: "dfi-progress", max: 1, value: 0 });
  const preview = previewImage("dfi-img", "deep feature interpolation");
  const out = h("div", {});
  const start = streamButton("dfi-start", "interpolate", bar, preview, out, () => {
    setQuery({ dfi_from: from.value, dfi_to: to.value });
    return [`/api/lab/${enc(image)}/interpolate`, { model, positive: to.value, negative: from.value, params: {} }];
  }, (last) => {
    preview.src = last.alphas[last.alphas.length - 1].png;
    show(out, h("p", { class: "muted" }, `features of ${last.layers.join(", ")}; α 0 is the image reconstructed`),
      h("div", { class: "row", id: "dfi-alphas" }, last.alphas.map((a) => h("div", { class: "unit-card" },
        h("img", { class: "pixel dfi-alpha", src: a.png, alt: `alpha ${a.alpha}` }), h("div", {}, `α ${a.alpha}`),
        h("div", { class: "pred" }, `${a.prediction.label} ${(100 * a.prediction.probability).toFixed(1)}%`),
        downloadLink(a.png, `dfi_alpha${a.alpha}.png`)))),
      pythonBlock(last.python));
  });
  show(where, h("div", { class: "tools" }, h("label", { for: "dfi-from" }, "from"), from, h("label", { for: "dfi-to" }, "towards"), to, start, bar),
    h("div", { class: "panel" }, preview), out);
}
