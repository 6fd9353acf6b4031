// "/models/{model}/layers/{layer}": every unit (paged) with its feature visualization and top dataset crop.
import { app, enc, errorBox, fmtShape, getJSON, h, page, pathParts, pythonBlock, query, show, title, weightsSlot } from "./common.js";
import { atlasNote, indexButton, visualizer } from "./visualize.js";

const BLANK = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==";  // 1x1 transparent

async function main() {
  const [, model, , layer] = pathParts();
  const params = query();
  const d = await getJSON(`/api/models/${enc(model)}/layers/${enc(layer)}?${params.toString()}`);
  const base = `/models/${enc(model)}/layers/${enc(d.layer.name)}`;
  const keep = new URLSearchParams(params);
  keep.delete("page");
  const suffix = keep.toString() ? `?${keep}` : "";
  const images = {};
  const cards = d.units.map((u) => {
    // a blank square until the visualization arrives (an <img> without a source shows a broken icon)
    const img = h("img", { class: "pixel visual", alt: `unit ${u.unit} visualization`, "data-unit": u.unit, src: u.visual ? u.visual.png : BLANK });
    images[u.unit] = img;
    // a unit whose largest value over the dataset is 0 never fires: its "top" image is only the first id
    const top = u.silent ? h("div", { class: "muted silent", title: `its largest value on ${d.dataset} is 0` }, "never fires")
      : u.top ? h("img", { class: "pixel top", src: u.top.crop, alt: `top crop of unit ${u.unit}`, title: `${u.top.label} (${u.top.value.toFixed(2)})` }) : null;
    const kernel = u.kernel ? h("img", { class: "pixel kernel", src: u.kernel.png, alt: `kernel of unit ${u.unit}`, title: "its kernel" }) : null;
    const name = u.label ? `unit ${u.unit} · ${u.label}` : `unit ${u.unit}`;
    return h("div", { class: "unit-card" }, h("a", { href: `${base}/units/${u.unit}${suffix}` }, img, h("div", {}, name)), top, kernel);
  });
  // a first-layer unit is linear in the pixels: its visualization is flat or nearly, its kernel shows what it weighs
  const channel = (d.params.objective || "channel") === "channel";  // the visualizations' objective
  const kernelNote = d.units.some((u) => u.kernel)
    ? h("p", { class: "muted", id: "kernel-note" }, "Under each unit, its kernel (grey 0, brighter positive, darker negative). ",
      channel ? "A unit of this layer weighs the pixels linearly, so the input that maximizes its channel's mean is flat or nearly "
        + "(each pixel at 0 or 1 by the sign of the weights over it); the kernel is the pattern it responds to."
        : "A unit of this layer weighs the pixels linearly; the kernel is the pattern it responds to.")
    : null;
  const vis = visualizer(model, d.layer.name, d.params);
  const nav = h("div", { class: "pager" },
    d.page > 0 ? h("a", { href: pageUrl(d.page - 1) }, "← previous") : null,
    h("span", {}, `page ${d.page + 1} of ${d.pages}`),
    d.page + 1 < d.pages ? h("a", { href: pageUrl(d.page + 1) }, "next →") : null);
  const out = h("div", { id: "python" });
  show(app(),
    title(`${d.layer.name}${d.layer.aliases && d.layer.aliases.length ? ` (${d.layer.aliases.join(", ")})` : ""} · ${model}`),
    h("p", { class: "muted" }, `${d.layer.type}, output ${fmtShape(d.layer.output_shape)}, ${d.layer.channels} units`,
      d.layer.receptive_field ? `, receptive field ${d.layer.receptive_field.size}px` : "",
      " — ", h("a", { href: `/models/${enc(model)}` }, "all layers")),
    weightsSlot(model),
    atlasNote(d, base),
    d.notice ? h("div", { class: "notice", id: "notice" }, d.notice, indexButton(model, d)) : null,
    h("div", { class: "tools" }, vis.bar, vis.status),
    legend(d), kernelNote, nav, h("div", { class: "grid", id: "units" }, cards), out);
  try {
    const last = await vis.run(d.units.map((u) => u.unit));
    for (const [unit, png] of Object.entries(last.units)) images[unit].src = png;
    show(out, pythonBlock(last.python));
  } catch (err) {
    show(out, errorBox(err));
  }
}

// What a card holds, said once above them.
function legend(d) {
  const top = d.units.some((u) => u.top) ? `; below it, the ${d.dataset} crop that excites the unit most (hover: its class and value)` : "";
  return h("p", { class: "muted", id: "legend" }, `Each card: the unit's feature visualization, the input it responds to most${top}.`);
}

function pageUrl(page) {
  const params = query();
  params.set("page", page);
  return `${location.pathname}?${params}`;
}

page(main);
