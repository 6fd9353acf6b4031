// Shared helpers of the explorer's pages: elements, JSON calls, event streams, errors, snippets.

export class ApiError extends Error {
  constructor(body) {
    super(body.message || "request failed");
    this.code = body.code || "UNKNOWN";
    this.field = body.field || null;
  }
}

// h("a", {href: "/x", class: "y"}, "text", child...) -> an element; text is always a text node, never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const app = () => document.getElementById("app");
export const enc = encodeURIComponent;

async function parse(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    body = { code: `HTTP_${response.status}`, message: response.statusText || "no readable answer" };
  }
  if (!response.ok) throw new ApiError(body);
  return body;
}

export async function getJSON(url) {
  return parse(await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }));
}

// State-changing calls carry X-Interp-Web: 1 (the server refuses them otherwise: CSRF guard).
export async function post(url, body, contentType = "application/json", signal = undefined) {
  const data = contentType === "application/json" ? JSON.stringify(body) : body;
  const response = await fetch(url, {
    method: "POST", body: data, credentials: "same-origin", signal,
    headers: { "Content-Type": contentType, "X-Interp-Web": "1", Accept: "application/json" },
  });
  return response;
}

export async function postJSON(url, body, contentType) {
  return parse(await post(url, body, contentType));
}

// A POST answered with server-sent events: calls onEvent(event) for each; resolves with the last.
// Aborting ``signal`` closes the stream, which cancels the call on the service.
export async function streamEvents(url, body, onEvent, signal = undefined) {
  const response = await post(url, body, "application/json", signal);
  if (!response.ok) await parse(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!chunk.startsWith("data: ")) continue;
      last = JSON.parse(chunk.slice(6));
      if (last.type === "error") throw new ApiError(last);
      onEvent(last);
    }
  }
  return last;
}

// The readable form of any failure: status name, message and the field at fault.
export function errorBox(err) {
  const code = err.code || "ERROR";
  return h("div", { class: "error", role: "alert" },
    h("span", { class: "code" }, code), err.message || String(err),
    err.field ? h("span", { class: "muted" }, ` (field: ${err.field})`) : null);
}

// A value the URL asks for that a picker does not hold: said on the page (null when it holds it),
// never silently replaced by what the picker shows instead: a link with a typo must not give
// other results unsaid.
export function unknownChoice(select, wanted, what) {
  if (!wanted || [...select.options].some((o) => o.value === wanted)) return null;
  const instead = select.value ? `; showing ${select.value} instead` : "";
  return errorBox({ code: "NOT_FOUND", message: `no ${what} '${wanted}' here${instead}`, field: what });
}

// A model the server serves with random weights (its explicit opt-in: weights source "random",
// reported pretrained=false) is said so on every page that shows what it computes: those classes,
// maps and images are an untrained network's, not the published model's. Not for a model still
// loading or unavailable, nor one whose card calls its own weights file not pretrained.
// modelInfo reads the model list once per page unless the page holds it already; names are
// matched as the server matches them (any case).
let modelList = null;
export function modelInfo(name, models = null) {
  if (models) modelList ??= Promise.resolve(models);
  modelList ??= getJSON("/api/models").then((d) => d.models, () => []);
  const key = String(name || "").trim().toLowerCase();
  return modelList.then((list) => list.find((m) => m.name === name || m.name.toLowerCase() === key) || null);
}

export function weightsNote(info) {
  if (!info || info.status !== "READY" || !info.weights || info.weights.source !== "random") return null;
  return h("div", { class: "notice weights-note", role: "note" }, h("b", {}, `${info.name} serves random weights`),
    " (pretrained=false): the server was started with random weights for it, so its classes, maps and",
    " images here are those of an untrained network, not of the published model.");
}

// An element holding the note of the page's model; its update(name) redraws it when the model
// changes. ``models``: the page's model list when it has one (no second request).
export function weightsSlot(name, models = null) {
  const slot = h("div", { class: "weights-slot" });
  slot.update = async (model) => {
    show(slot, weightsNote(await modelInfo(model, models)));
    slot.dataset.model = model;  // drawn for this model (a test waits on it)
  };
  if (name) slot.update(name);
  return slot;
}

// Replace an element's children, leaving out the null/false of optional parts.
export function show(where, ...children) {
  where.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function showError(where, err) {
  show(where, errorBox(err));
}

// Show `busy` in `where`, then what `render` makes of the JSON at `url` (an element or a list of
// them), or the error in its place.
export async function fill(where, busy, url, render) {
  show(where, h("p", { class: "muted" }, busy));
  try {
    show(where, render(await getJSON(url)));
  } catch (err) {
    show(where, errorBox(err));
  }
}

// A page's entry point: an error that escapes main() is shown in place of "Loading…" when the page
// drew nothing yet, else above what it drew (which stays usable): never a blank or silent page.
export function page(main) {
  const loading = app().firstElementChild;
  main().catch((err) => {
    const root = app();
    if (root.firstElementChild === loading) showError(root, err);
    else root.prepend(errorBox(err));
  });
}

// "copy as Python": the exact SDK call, and a button that copies it.
export function pythonBlock(code, label = "copy as Python") {
  if (!code) return null;
  const pre = h("pre", { class: "mono" }, code);
  const button = h("button", { type: "button", onclick: async () => {
    try { await navigator.clipboard.writeText(code); button.textContent = "copied"; }
    catch { button.textContent = "select the text to copy"; }
  } }, "copy");
  return h("details", { class: "code" }, h("summary", {}, label), button, pre);
}

export function downloadLink(href, name) {
  if (!href) return null;
  return h("a", { href, download: name, class: "download" }, "download PNG");
}

// The view's state lives in the URL's query: read with query(), change with setQuery().
export function query() {
  return new URLSearchParams(location.search);
}

export function setQuery(changes) {
  const params = query();
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") params.delete(key);
    else params.set(key, value);
  }
  const search = params.toString();
  history.replaceState(null, "", location.pathname + (search ? `?${search}` : ""));
}

export function pathParts() {
  return location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
}

export function fmtShape(shape) {
  return shape && shape.length ? shape.join("×") : "–";
}

export function title(text) {
  document.title = `${text} · interp explorer`;
  return h("h1", {}, text);
}

// A labelled input: "label <input>".
export function field(label, input) {
  return h("label", {}, `${label} `, input);
}

// The dataset pages' pickers: a model select and a select of the served datasets that fit the
// chosen model, smallest first (refilled when the model changes), the query's values chosen.
// null when the lists cannot be read: the page then shows the error under its title.
// The model a page opens on when its link names none: a READY model with trained weights (a first
// look at random weights shows nothing), one that fits() accepts if any; else any READY model.
export function defaultModel(models, fits = () => true) {
  const ready = models.filter((m) => m.status === "READY");
  const trained = ready.filter((m) => m.pretrained);
  return (trained.find(fits) || trained[0] || ready.find(fits) || ready[0] || models[0] || {}).name || "";
}

export async function modelAndDataset(params, pageTitle) {
  let models, datasets;
  try {
    [models, datasets] = await Promise.all([getJSON("/api/models"), getJSON("/api/datasets")]);
  } catch (err) {
    show(app(), title(pageTitle), errorBox(err));
    return null;
  }
  const fitsADataset = (m) => datasets.datasets.some((d) => d.fits_models.includes(m.name));
  const chosen = params.get("model") || defaultModel(models.models, fitsADataset);
  const model = h("select", { id: "model" }, models.models.map((m) => h("option", { value: m.name, selected: m.name === chosen }, m.name)));
  const dataset = h("select", { id: "dataset" });
  const fill = () => {
    const fitting = datasets.datasets.filter((d) => d.fits_models.includes(model.value)).sort((a, b) => a.size - b.size);
    show(dataset, fitting.length ? fitting.map((d) => h("option", { value: d.name, selected: d.name === params.get("dataset") }, `${d.name} (${d.size})`))
      : h("option", { value: "" }, "no served dataset fits this model"));
  };
  const note = weightsSlot(model.value, models.models);
  model.addEventListener("change", () => { fill(); note.update(model.value); });
  fill();
  const refusals = [unknownChoice(model, params.get("model"), "model"), unknownChoice(dataset, params.get("dataset"), "dataset")];
  return { model, dataset, note, refusals: refusals.filter(Boolean) };
}
