// "/": the served models with their status, weights provenance, input and classes.
import { app, enc, fmtShape, getJSON, h, page, pythonBlock, show, title } from "./common.js";

async function main() {
  const { models, python } = await getJSON("/api/models");
  const rows = models.map((m) => h("tr", {},
    h("td", {}, h("a", { href: `/models/${enc(m.name)}` }, m.name), h("div", { class: "muted" }, m.description)),
    h("td", {}, m.status, m.reason ? h("div", { class: "muted" }, m.reason) : null),
    h("td", {}, m.pretrained ? "pretrained" : "random weights"),
    h("td", { class: "mono" }, m.source && m.source !== "builtin" ? `${m.source} ` : "", m.weights.source || "–",
      h("br"), m.weights.file,
      m.weights.sha256 ? h("div", { class: "muted", title: m.weights.sha256 }, `sha256 ${m.weights.sha256.slice(0, 12)}…`) : null),
    h("td", {}, fmtShape(m.input_shape)),
    h("td", {}, `${m.num_classes}`, m.dataset ? h("div", { class: "muted" }, m.dataset) : null),
    h("td", {}, h("a", { href: `/lab?model=${enc(m.name)}` }, "lab"))));
  const table = h("table", { id: "models" },
    h("thead", {}, h("tr", {}, ...["model", "status", "weights", "provenance", "input", "classes", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
  show(app(), title("Models"), table, pythonBlock(python));
}

page(main);
