// "/live?model=M&layer=L[&unit=U]": a layer's channels at frame rate from the camera or a video file
// (the Deep Visualization Toolbox's view). Frames go over one WebSocket to the web process, which
// holds one Watch stream; a new frame leaves only when the previous answer arrived (latest frame
// wins: the camera's frames in between are never sent). A click on a channel selects that unit:
// its map enlarged, its top-9 dataset crops and its feature visualization beside the grid.
import { app, defaultModel, enc, errorBox, getJSON, h, page, pythonBlock, query, setQuery, show, title, weightsSlot } from "./common.js";
import { visualParams, visualizer } from "./visualize.js";

const MAX_SIDE = 224; // frames are scaled down to this before encoding (the service resizes anyway)

function socketUrl(model, layer, unit) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/live?model=${enc(model)}&layer=${enc(layer)}&unit=${unit}`;
}

async function main() {
  const params = query();
  const status = h("div", { id: "live-status" });
  let models;
  try {
    ({ models } = await getJSON("/api/models"));
  } catch (err) {
    show(app(), title("Live"), errorBox(err));
    return;
  }
  const model = params.get("model") || defaultModel(models);
  const modelSelect = h("select", { id: "model", onchange: () => reload({ model: modelSelect.value, layer: null, unit: null }) },
    models.map((m) => h("option", { value: m.name, selected: m.name === model }, m.name)));
  let layers = [];
  try {
    layers = (await getJSON(`/api/models/${enc(model)}`)).layers.filter((l) => l.channels);
  } catch (err) {
    show(app(), title("Live"), h("div", { class: "tools" }, modelSelect), errorBox(err));
    return;
  }
  const wantedLayer = params.get("layer");
  // by module path or alias (relu2 for AlexNet's features.4), in any case, as every page takes them
  const named = (l) => [l.name, ...(l.aliases || [])].some((n) => n.toLowerCase() === (wantedLayer || "").toLowerCase());
  const match = layers.find(named);
  const known = Boolean(match);
  const layer = known ? match.name : (layers.find((l) => l.output_shape.length === 3) || layers[0] || {}).name || "";
  let current = layer;  // a running stream changes layer in place (the Watch stream takes it); else the page reloads
  const layerSelect = h("select", { id: "layer", onchange: () => {
    if (!stream.running()) { reload({ layer: layerSelect.value, unit: null }); return; }
    current = layerSelect.value;
    stream.setLayer(current);
    setQuery({ layer: current, unit: null });
    heading.textContent = `Live · ${current} of ${model}`;
    gridCaption.textContent = `${current}: every channel (click one)`;
    grid.alt = `every channel of ${current}`;
    if (refused) refused.remove();  // "showing X instead" no longer holds
    show(python, snippet(current));
    show(unitPanel, h("p", { class: "muted" }, "click a channel to select its unit"));
  } },
    layers.map((l) => h("option", { value: l.name, selected: l.name === layer }, l.aliases && l.aliases.length ? `${l.name} (${l.aliases[0]})` : l.name)));
  const video = h("video", { class: "live-source", id: "source", muted: true, playsinline: true, loop: true });
  video.muted = true;
  const grid = h("img", { class: "live-grid", id: "grid", alt: `every channel of ${layer}` });
  grid.hidden = true;
  const counters = h("div", { class: "counters", id: "counters" }, "no frame yet");
  const predictions = h("ol", { id: "predictions" });
  const unitPanel = h("div", { id: "unit-panel" }, h("p", { class: "muted" }, "click a channel to select its unit"));
  const camera = h("button", { type: "button", id: "camera" }, "Camera");
  const file = h("input", { type: "file", id: "video-file", accept: "video/*" });
  const stop = h("button", { type: "button", id: "stop", disabled: true }, "Stop");
  const refused = wantedLayer && !known
    ? errorBox({ code: "NOT_FOUND", message: `${model} has no layer '${wantedLayer}' with channels here; showing ${layer} instead`, field: "layer" })
    : null;
  const heading = title(`Live · ${layer} of ${model}`);
  const snippet = (name) => pythonBlock(`from client import InterpClient\n\nwith InterpClient("SERVER") as c:\n` +
    `    for answer in c.watch(frames, model=${JSON.stringify(model)}, layer=${JSON.stringify(name)}, top_k=5):\n` +
    "        print(answer.sequence, answer.skipped, answer.maps.shape)", "copy as Python (the SDK's watch)");
  const python = h("div", { id: "live-python" }, snippet(layer));
  const gridCaption = h("div", {}, `${layer}: every channel (click one)`);
  show(app(), heading, refused,
    h("div", { class: "tools" }, h("label", {}, "model ", modelSelect), h("label", {}, "layer ", layerSelect),
      camera, h("label", {}, "or a video file ", file), stop),
    weightsSlot(model, models),
    status, counters,
    h("div", { class: "row" },
      h("div", { class: "panel" }, h("div", {}, "input"), video),
      h("div", { class: "panel" }, gridCaption, grid),
      h("div", { class: "panel" }, h("div", {}, "top classes"), predictions)),
    h("h2", {}, "Selected unit"), unitPanel,
    python);

  const stream = liveStream({ model, layer, video, grid, counters, predictions, status, stop });
  camera.addEventListener("click", async () => {
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
      video.removeAttribute("src");
      await stream.start();
    } catch (err) {
      show(status, errorBox(typeof err.code === "string" ? err : mediaError(err, "the camera")));
    }
  });
  file.addEventListener("change", async () => {
    if (!file.files.length) return;
    video.srcObject = null;
    video.src = URL.createObjectURL(file.files[0]);
    await stream.start(file.files[0].name);
  });
  stop.addEventListener("click", () => stream.stop());
  grid.addEventListener("click", (event) => {
    const unit = stream.unitAt(event);
    if (unit !== null) selectUnit(model, current, unit, stream, unitPanel);
  });
  const unit = Number(params.get("unit"));
  if (!refused && params.get("unit") !== null && Number.isInteger(unit) && unit >= 0) selectUnit(model, layer, unit, stream, unitPanel);
}

// What went wrong with the camera or a video file, and what to do instead (the browser's own
// words are kept at the end).
function mediaError(err, source) {
  const said = `(${err.name || "error"}: ${err.message || err})`;
  const fixes = {
    NotAllowedError: `the browser may not use ${source}: allow the camera for this site, or choose a video file instead`,
    NotFoundError: "no camera found on this machine: choose a video file instead",
    OverconstrainedError: "no camera found on this machine: choose a video file instead",
    NotReadableError: "the camera is in use by another program (or the system refused it): close that program, or choose a video file",
    NotSupportedError: `this browser cannot play ${source} (its container or codec): WebM (VP8, VP9) and H.264 MP4 play `
      + "everywhere; interp watch's .mp4 (MPEG-4 Part 2) does not: write it as out.webm (VP8)",
  };
  return { code: err.name === "NotAllowedError" ? "PERMISSION_DENIED" : "MEDIA", message: `${fixes[err.name] || `cannot use ${source}`} ${said}` };
}

function reload(changes) {
  setQuery(changes);
  location.reload();
}

// The socket and the frame loop: capture, send, wait for the answer, draw, capture again.
function liveStream({ model, layer: firstLayer, video, grid, counters, predictions, status, stop }) {
  let layer = firstLayer;
  const canvas = document.createElement("canvas");
  let socket = null;
  let waiting = false;
  let unit = -1;
  let last = null;
  let processed = 0;
  let skipped = 0;
  const times = [];

  function capture() {
    if (!socket || socket.readyState !== WebSocket.OPEN || waiting) return;
    if (video.readyState < 2 || !video.videoWidth) { requestAnimationFrame(capture); return; }
    const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    canvas.width = Math.max(1, Math.round(video.videoWidth * scale));
    canvas.height = Math.max(1, Math.round(video.videoHeight * scale));
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    waiting = true;
    canvas.toBlob(async (blob) => {
      if (!blob || !socket || socket.readyState !== WebSocket.OPEN) { waiting = false; return; }
      socket.send(await blob.arrayBuffer());
    }, "image/jpeg", 0.9);
  }

  function draw(m) {
    processed += 1;
    skipped += m.skipped;
    const now = performance.now();
    times.push(now);
    while (times.length && now - times[0] > 2000) times.shift();
    const fps = times.length > 1 ? (times.length - 1) / ((now - times[0]) / 1000) : 0;
    counters.dataset.processed = String(processed);
    counters.textContent = `processed ${processed} frames · skipped ${skipped} · ${fps.toFixed(1)} fps · ` +
      `${m.compute_ms.toFixed(1)} ms on the service`;
    if (m.error) { show(status, errorBox(m.error)); return; }
    if (m.layer && m.layer !== layer) return;  // computed before a layer change: its grid is the old layer's
    last = m;
    grid.src = m.grid;
    grid.hidden = false;
    show(predictions, m.predictions.map((p) => h("li", {}, `${p.label} ${(100 * p.probability).toFixed(1)}%`)));
    const map = document.getElementById("unit-map");
    if (map && m.unit_map && m.unit === unit) map.src = m.unit_map;
  }

  function open() {
    return new Promise((resolve, reject) => {
      socket = new WebSocket(socketUrl(model, layer, unit));
      socket.onopen = () => resolve();
      socket.onerror = () => reject({ code: "UNAVAILABLE", message: "the explorer refused or lost the live connection" });
      socket.onclose = () => { socket = null; stop.disabled = true; };
      socket.onmessage = (event) => {
        const m = JSON.parse(event.data);
        if (m.type === "error") show(status, errorBox(m));
        else if (m.sequence >= 0) draw(m);
        else if (m.error) show(status, errorBox(m.error)); // a settings change the service refused
        if (m.type === "error" || m.sequence >= 0) { waiting = false; requestAnimationFrame(capture); }
      };
    });
  }

  return {
    async start(fileName = null) {
      show(status);
      try {
        if (!socket) await open();
        stop.disabled = false;
        await video.play();
        requestAnimationFrame(capture);
      } catch (err) {
        show(status, errorBox(typeof err.code === "string" ? err : mediaError(err, fileName ? `the file ${fileName}` : "the camera")));
      }
    },
    stop() {
      if (socket) socket.close();
      video.pause();
    },
    select(next) {
      unit = next;
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ unit }));
    },
    running() {
      return Boolean(socket && socket.readyState === WebSocket.OPEN);
    },
    // from the next processed frame on (the unit is cleared: the new layer has its own)
    setLayer(next) {
      layer = next;
      unit = -1;
      last = null;
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ layer, unit }));
    },
    // the channel under a click on the grid (null between tiles or past the last channel)
    unitAt(event) {
      if (!last) return null;
      const x = (event.offsetX * grid.naturalWidth) / grid.clientWidth;
      const y = (event.offsetY * grid.naturalHeight) / grid.clientHeight;
      const col = Math.floor(x / (last.tile_width + last.gap));
      const row = Math.floor(y / (last.tile_height + last.gap));
      const c = row * last.cols + col;
      return col < last.cols && c < last.channels ? c : null;
    },
  };
}

// The selected unit: its live map, its top-9 dataset crops and its feature visualization.
async function selectUnit(model, layer, unit, stream, panel) {
  stream.select(unit);
  setQuery({ unit });
  const map = h("img", { class: "big", id: "unit-map", alt: `unit ${unit}'s live map` });
  const visual = h("img", { class: "big", id: "visual", alt: `feature visualization of unit ${unit}` });
  visual.hidden = true;
  const crops = h("div", { id: "top" }, h("p", { class: "muted" }, "loading the top dataset crops…"));
  const vis = visualizer(model, layer, visualParams(query()));
  show(panel, h("p", {}, h("a", { href: `/models/${enc(model)}/layers/${enc(layer)}/units/${unit}` }, `unit ${unit} of ${layer}`),
    " (its own page)"),
  h("div", { class: "row" },
    h("div", { class: "panel" }, h("div", {}, "live map"), map),
    h("div", { class: "panel" }, h("div", {}, "feature visualization"), visual, vis.preview, h("div", { class: "tools" }, vis.bar, vis.status))),
  h("h2", {}, "Top 9 dataset crops"), crops);
  try {
    const d = await getJSON(`/api/models/${enc(model)}/layers/${enc(layer)}/units/${unit}`);
    show(crops, d.notice ? h("div", { class: "notice", id: "notice" }, d.notice)
      : h("div", { class: "grid" }, d.top.map((e, rank) => h("div", { class: "unit-card" },
        h("img", { class: "pixel", src: e.crop, alt: `crop ${rank + 1}` }), h("div", {}, `${e.label} · ${e.value.toFixed(2)}`)))));
    if (d.visual) { visual.src = d.visual.png; visual.hidden = false; }
    const last = await vis.run([unit]);
    visual.src = last.units[String(unit)];
    visual.hidden = false;
    vis.preview.hidden = true;
  } catch (err) {
    show(crops, errorBox(err));
  }
}

page(main);
