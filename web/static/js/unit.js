// "/models/{model}/layers/{layer}/units/{unit}": one unit's feature visualization (streamed previews)
// and its top-9 dataset crops with their projections (Zeiler & Fergus).
import { app, downloadLink, enc, errorBox, fill, getJSON, h, page, pathParts, pythonBlock, query, show, title, weightsSlot } from "./common.js";
import { atlasNote, indexButton, visualizer } from "./visualize.js";

// A first-layer unit's kernel: the pixels it weighs, which its feature visualization cannot show
// (the channel's mean is linear in the pixels, so the input maximizing it is flat or nearly).
function kernelPanel(d) {
  if (!d.kernel) return null;
  const channel = (d.params.objective || "channel") === "channel";  // the visualization's objective
  return h("div", { class: "panel kernel-panel", id: "kernel" },
    h("div", {}, `kernel ${d.kernel.shape.join("×")}`),
    h("img", { class: "pixel", src: d.kernel.png, alt: `kernel of unit ${d.unit}` }),
    h("p", { class: "muted" }, "grey 0, brighter positive, darker negative. A first-layer unit weighs the pixels",
      " linearly", channel ? ": the input that maximizes its channel's mean is flat or nearly (each pixel at 0 or 1"
        + " by the sign of the weights over it); this is the pattern it responds to." : "; this is the pattern it responds to."),
    pythonBlock(d.kernel.python, "copy as Python (kernels)"));
}

async function main() {
  const [, model, , layer, , unit] = pathParts();
  const params = query();
  const d = await getJSON(`/api/models/${enc(model)}/layers/${enc(layer)}/units/${enc(unit)}?${params}`);
  const vis = visualizer(model, d.layer.name, d.params);
  const img = h("img", { class: "big", id: "visual", alt: `feature visualization of unit ${d.unit}` });
  const visTools = h("div", { class: "tools" });
  const visCode = h("div", {});
  const tops = d.top.map((e, rank) => h("div", { class: "unit-card" },
    h("img", { class: "pixel", src: e.crop, alt: `crop ${rank + 1}` }),
    e.projection ? h("img", { class: "pixel", src: e.projection, alt: `projection ${rank + 1}` }) : null,
    h("div", {}, `${e.label} · ${e.value.toFixed(2)}`), h("div", { class: "muted" }, `image ${e.image_id}`)));
  show(app(),
    title(`${d.layer.name} unit ${d.unit}${d.label ? ` (${d.label})` : ""} · ${model}`),
    h("p", {}, h("a", { href: `/models/${enc(model)}/layers/${enc(d.layer.name)}` }, `all units of ${d.layer.name}`)),
    weightsSlot(model),
    h("h2", {}, "Feature visualization"), atlasNote(d, location.pathname),
    h("div", { class: "row" }, h("div", { class: "panel" }, img), h("div", {}, vis.preview), kernelPanel(d)),
    h("div", { class: "tools" }, vis.bar, vis.status), visTools, visCode,
    onImage(model, d),
    h("h2", {}, `Top ${d.top.length || 9} dataset crops${d.dataset ? ` from ${d.dataset}` : ""} (crop, projection)`),
    d.tied && !d.notice ? h("div", { class: "notice", id: "tied" }, d.top.length && d.top[0].value === 0
      ? `This unit never fires on ${d.dataset}: every image gives it 0, so these are simply the first images by id and say nothing about it.`
      : `Every one of these images gives this unit the same value (${d.top.length ? d.top[0].value.toFixed(4) : ""}): they tie, ordered by image id, and say little about it.`) : null,
    d.notice ? h("div", { class: "notice", id: "notice" }, d.notice, indexButton(model, d)) : h("div", { class: tops.length <= 9 ? "grid top9" : "grid", id: "top" }, tops),
    pythonBlock(d.python, "copy as Python (top activations)"));
  if (d.visual) img.src = d.visual.png;
  try {
    // from the atlas: the unit's whole stored batch (one stored batch is answered from it)
    const batch = !d.visual && d.atlas && d.atlas.serves ? d.atlas.batch_channels : [d.unit];
    const last = await vis.run(batch);
    const png = last.units[String(d.unit)];
    img.src = png;
    vis.preview.hidden = true;
    show(visTools, downloadLink(png, `${model}_${d.layer.name}_unit${d.unit}.png`));
    show(visCode, pythonBlock(last.python));
  } catch (err) {
    show(visCode, errorBox(err));
  }
}

// With ?image=SHA256 (a link from the lab): this unit's activation map on that image.
function onImage(model, d) {
  const image = query().get("image");
  if (!image) return null;
  const box = h("div", { id: "on-image" });
  const url = `/api/lab/${enc(image)}/unit?model=${enc(model)}&layer=${enc(d.layer.name)}&unit=${d.unit}`;
  fill(box, "computing the map…", url, (m) => [h("div", { class: "row" },
    h("div", { class: "panel" }, h("div", {}, "input"), h("img", { class: "big", src: m.input, alt: "the lab's image" })),
    h("div", { class: "panel" }, h("div", {}, `unit ${d.unit}: max ${m.max.toFixed(2)}, mean ${m.mean.toFixed(2)}`),
      h("img", { class: "big", id: "unit-map", src: m.map, alt: "activation map on the lab's image" }),
      h("div", { class: "tools" }, downloadLink(m.map, `${model}_${d.layer.name}_unit${d.unit}_map.png`)))),
    h("p", {}, h("a", { id: "back-to-lab", href: labLink(image, model) }, "back to the lab")), pythonBlock(m.python)]);
  return [h("h2", {}, "On the lab's image"), box];
}

// The lab view the link came from (``back=``, a path of this site's lab only), else the image in the lab.
function labLink(image, model) {
  const back = query().get("back");
  return back && back.startsWith("/lab?") ? back : `/lab?image=${enc(image)}&model=${enc(model)}`;
}

page(main);
