// "/models/{model}": the layers as a strip (shape, receptive field, parameters) and the first layer's kernels.
import { app, downloadLink, enc, fmtShape, getJSON, h, page, pathParts, pythonBlock, show, title, weightsNote } from "./common.js";

async function main() {
  const [, model] = pathParts();
  const d = await getJSON(`/api/models/${enc(model)}`);
  const name = d.model.name;
  const cards = d.layers.map((l) => h("div", { class: "layer-card" },
    l.channels ? h("a", { class: "name", href: `/models/${enc(name)}/layers/${enc(l.name)}` }, l.name)
      : h("span", { class: "name" }, l.name),
    l.aliases && l.aliases.length ? h("div", { class: "alias" }, l.aliases.join(", ")) : null,
    h("div", { class: "muted" }, l.type),
    h("div", {}, `out ${fmtShape(l.output_shape)}`),
    h("div", {}, l.receptive_field ? `RF ${l.receptive_field.size}px, jump ${l.receptive_field.jump}` : "RF –"),
    h("div", {}, `${l.parameters.toLocaleString()} params`)));
  const parts = [
    title(`${name}`),
    h("p", { class: "muted" }, d.model.description, ` — input ${fmtShape(d.model.input_shape)}, ${d.labels.length} classes, `,
      d.model.pretrained ? "pretrained"
        : d.model.source === "builtin" ? "served with random weights (not the published ones its description names)" : "not pretrained"),
    weightsNote(d.model),
    h("h2", {}, "Layers"), h("div", { class: "strip", id: "strip" }, cards),
    pythonBlock(d.python),
  ];
  if (d.kernels) {
    parts.push(h("h2", {}, `First layer's kernels: ${d.kernels.layer} ${fmtShape(d.kernels.shape)}`),
      h("div", { class: "panel" }, h("img", { class: "kernels", id: "kernels", src: d.kernels.png, alt: `kernels of ${d.kernels.layer}` })),
      h("div", { class: "tools" }, downloadLink(d.kernels.png, `${name}_${d.kernels.layer}_kernels.png`)),
      pythonBlock(d.kernels.python));
  }
  parts.push(h("p", {}, h("a", { href: `/lab?model=${enc(name)}` }, "Open the lab with this model")));
  show(app(), ...parts.filter(Boolean));
}

page(main);
