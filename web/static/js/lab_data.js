// The lab's dataset browser (DatasetImages): a served dataset that fits the model, one class or all,
// paged thumbnails; a click hands (dataset, position) to onPick, which loads it like an upload.
import { enc, fill, h, pythonBlock, show } from "./common.js";

const PER_PAGE = 24;

export function datasetBrowser(model, datasets, onPick) {
  const fitting = datasets.filter((d) => d.fits_models.includes(model)).sort((a, b) => a.size - b.size);
  if (!fitting.length) {
    return h("details", { class: "panel", id: "browser" }, h("summary", {}, "or pick a dataset image"),
      h("p", { class: "notice" }, `no served dataset fits ${model}'s input; an operator adds one with interp-server --dataset NAME=DIR`));
  }
  const dataset = h("select", { id: "browse-dataset" }, fitting.map((d) => h("option", { value: d.name }, `${d.name} (${d.size})`)));
  const klass = h("select", { id: "browse-class" });
  const where = h("span", { class: "muted", id: "browse-page" });
  const grid = h("div", { class: "grid", id: "browse-images" });
  const python = h("div", {});
  let page = 0;
  let pages = 1;
  const fillClasses = () => {
    const info = fitting.find((d) => d.name === dataset.value);
    show(klass, h("option", { value: "-1" }, "every class"), info.classes.map((c, i) => h("option", { value: String(i) }, c)));
  };
  function load() {
    const url = `/api/lab/datasets/${enc(dataset.value)}/images?model=${enc(model)}&label=${klass.value}&page=${page}&per_page=${PER_PAGE}`;
    return fill(grid, "loading…", url, (p) => {
      pages = Math.max(1, Math.ceil(p.total / p.per_page));
      where.textContent = `page ${page + 1} of ${pages} (${p.total} images)`;
      show(python, pythonBlock(p.python));
      return p.images.map((im) => h("button", { type: "button", class: "thumb", "data-position": im.position,
        title: `${p.dataset} #${im.position}: ${im.label}`, onclick: () => onPick(p.dataset, im.position) },
        h("img", { class: "pixel", src: im.png, alt: `${im.label} #${im.position}` }),
        h("div", { class: "muted" }, `#${im.position} ${im.label}`)));
    });
  }
  const turn = (delta) => { const next = Math.min(pages - 1, Math.max(0, page + delta)); if (next !== page) { page = next; load(); } };
  dataset.addEventListener("change", () => { page = 0; fillClasses(); load(); });
  klass.addEventListener("change", () => { page = 0; load(); });
  fillClasses();
  const details = h("details", { class: "panel", id: "browser" }, h("summary", {}, "or pick a dataset image"),
    h("div", { class: "tools" }, h("label", { for: "browse-dataset" }, "dataset"), dataset, h("label", { for: "browse-class" }, "class"), klass,
      h("button", { type: "button", id: "browse-prev", onclick: () => turn(-1) }, "◀ previous"),
      h("button", { type: "button", id: "browse-next", onclick: () => turn(1) }, "next ▶"), where),
    grid, python);
  let loaded = false;
  details.addEventListener("toggle", () => { if (details.open && !loaded) { loaded = true; load(); } });
  return details;
}
