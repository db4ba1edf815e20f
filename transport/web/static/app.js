// The canvas page: draw, stream each change to a session, show the pipeline's answer.
import { EaselClient, State, listPipelines } from "./easel-client.mjs";
import { DrawingSurface } from "./drawing.js";
import { ParamsForm } from "./params-form.js";

const $ = (selector) => document.querySelector(selector);
const ORIGIN = window.location.origin;
const STORE_KEY = "easel.canvas";
const KEY_STORE = "easel.apiKey";
const SWATCHES = ["#1f2937", "#e11d48", "#f59e0b", "#10b981", "#2563eb", "#7c3aed"];

const TITLES = {
  bad_params: "The pipeline refused a setting",
  bad_content: "The engine could not read a frame",
  bad_frame: "The engine refused a message",
  pipeline_error: "The pipeline failed on a frame",
  overloaded: "The engine is busy",
  unauthorized: "An API key is needed",
  forbidden: "This session is open elsewhere",
  not_found: "Not found",
  session_closed: "The session ended",
  too_large: "A frame was too large",
  internal: "The engine had an internal error",
  unavailable: "The engine cannot be reached",
  invalid: "The engine refused the request",
  timeout: "The engine did not answer in time",
};

const DRAIN_NOTES = {
  latest: "Frames the pipeline can't keep up with are replaced by newer ones: lowest latency.",
  all: "Every frame is answered, in order; the page waits while the engine is busy.",
};

// --- settings kept between visits -------------------------------------------------

function loadSettings() {
  try {
    return { params: {}, ...JSON.parse(localStorage.getItem(STORE_KEY) ?? "{}") };
  } catch {
    return { params: {} };
  }
}

const settings = loadSettings();

function saveSettings() {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(settings));
  } catch {
    // storage may be off (private mode): settings then last for this visit only
  }
}

// A key handed over in the URL fragment (`/#key=…`, the link `easel serve` prints on
// its first start): keep it for this tab, then drop it from the address bar and
// history. A fragment never reaches the server, so it is never in an access log.
function takeKeyFromUrl() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  if (!key) return;
  try {
    sessionStorage.setItem(KEY_STORE, key.trim());
  } catch {
    // without storage the key can't be kept: the page will ask for it
  }
  fragment.delete("key");
  const rest = fragment.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
}
takeKeyFromUrl();

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || undefined;
  } catch {
    return undefined;
  }
}

// --- messages -----------------------------------------------------------------------

const messages = $("#messages");
const shown = new Map(); // key -> { element, count, timer }

function notify({ level = "error", title, detail = "", key = title, ttl = level === "error" ? 9000 : 5000 }) {
  let entry = shown.get(key);
  if (entry) {
    entry.count += 1;
    entry.element.querySelector(".count").textContent = `×${entry.count}`;
    entry.element.querySelector("p").textContent = detail;
    clearTimeout(entry.timer);
  } else {
    const element = document.createElement("div");
    element.className = "message";
    element.dataset.level = level;
    element.dataset.key = key;
    element.setAttribute("role", level === "error" ? "alert" : "status");
    const head = document.createElement("strong");
    head.textContent = title;
    const count = document.createElement("span");
    count.className = "count";
    head.append(count);
    const close = document.createElement("button");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    const body = document.createElement("p");
    body.textContent = detail;
    element.append(head, close, body);
    messages.append(element);
    entry = { element, count: 1, timer: null };
    shown.set(key, entry);
    close.addEventListener("click", () => dismiss(key));
  }
  if (ttl) entry.timer = setTimeout(() => dismiss(key), ttl);
}

function dismiss(key) {
  const entry = shown.get(key);
  if (!entry) return;
  clearTimeout(entry.timer);
  entry.element.remove();
  shown.delete(key);
}

/** An error from the engine as a person reads it: what happened, then the details. */
function notifyError(error, context = "") {
  const code = error?.code ?? "internal";
  const title = TITLES[code] ?? "Something went wrong";
  let detail = error?.message || "";
  if (error?.seq !== undefined) detail = `frame ${error.seq}: ${detail}`;
  if (context) detail = `${context}: ${detail}`;
  notify({ level: "error", title, detail: `${detail} (${code})`, key: `error:${code}` });
}

// --- the status pill and readout -------------------------------------------------------

const statusEl = $("#status");
const statusText = $("#status-text");

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusText.textContent = text;
}

const readout = {
  fps: $("#fps"),
  rtt: $("#rtt"),
  superseded: $("#superseded"),
  queue: $("#t-queue"),
  pipeline: $("#t-pipeline"),
  total: $("#t-total"),
  frames: $("#frames"),
  errors: $("#errors"),
};

const stats = {
  sent: 0,
  answered: 0,
  superseded: 0,
  errors: 0,
  arrivals: [], // times results arrived, the last 2 s
  rtts: [],
  timings: null,
};

function resetStats() {
  Object.assign(stats, { sent: 0, answered: 0, superseded: 0, errors: 0, arrivals: [], rtts: [], timings: null });
  renderReadout();
}

const ms = (value) => (value === null || value === undefined ? "–" : value < 10 ? value.toFixed(1) : Math.round(value).toString());

function renderReadout() {
  const now = performance.now();
  stats.arrivals = stats.arrivals.filter((t) => now - t < 2000);
  const arrivals = stats.arrivals;
  let fps = 0;
  if (arrivals.length >= 2 && now - arrivals.at(-1) < 1000) {
    fps = ((arrivals.length - 1) * 1000) / Math.max(arrivals.at(-1) - arrivals[0], 1);
  }
  readout.fps.textContent = stats.answered ? fps.toFixed(1) : "–";
  const rtt = stats.rtts.length ? stats.rtts.reduce((a, b) => a + b, 0) / stats.rtts.length : null;
  readout.rtt.textContent = ms(rtt);
  readout.superseded.textContent = String(stats.superseded);
  readout.queue.textContent = ms(stats.timings?.queue_ms);
  readout.pipeline.textContent = ms(stats.timings?.pipeline_ms);
  readout.total.textContent = ms(stats.timings?.total_ms);
  readout.frames.textContent = `${stats.answered} / ${stats.sent}`;
  readout.errors.textContent = String(stats.errors);
  // whether the output answers the picture as it is now (for tests and tools)
  const client = current?.client;
  const synced = Boolean(client) && client.state === State.OPEN && !dirty && !sending && client.inflight === 0 && shownSeq === lastSentSeq;
  document.body.dataset.synced = String(synced);
}

setInterval(renderReadout, 250);

// --- drawing ------------------------------------------------------------------------

const drawCanvas = $("#draw");
const drawing = new DrawingSurface(drawCanvas);
const undoButton = $("#undo");
const sizeDot = $("#size-dot");

function setTool(tool) {
  drawing.tool = tool;
  $("#draw-pane").dataset.tool = tool;
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
  }
}

function setColor(color) {
  drawing.color = color;
  $("#color").value = color;
  sizeDot.style.background = color;
  for (const swatch of document.querySelectorAll(".swatch")) {
    swatch.setAttribute("aria-pressed", String(swatch.dataset.color === color));
  }
  settings.color = color;
  saveSettings();
  setTool("brush");
}

function setSize(size) {
  drawing.size = size;
  $("#size").value = String(size);
  const dot = Math.max(4, Math.min(20, size / 2.5));
  sizeDot.style.width = `${dot}px`;
  sizeDot.style.height = `${dot}px`;
  settings.size = size;
  saveSettings();
}

for (const color of SWATCHES) {
  const swatch = document.createElement("button");
  swatch.type = "button";
  swatch.className = "swatch";
  swatch.dataset.color = color;
  swatch.title = color;
  swatch.style.background = color;
  swatch.addEventListener("click", () => setColor(color));
  $("#swatches").append(swatch);
}

for (const button of document.querySelectorAll("[data-tool]")) {
  button.addEventListener("click", () => setTool(button.dataset.tool));
}
$("#color").addEventListener("input", (e) => setColor(e.target.value));
$("#size").addEventListener("input", (e) => setSize(parseInt(e.target.value, 10)));
undoButton.addEventListener("click", () => drawing.undo());
$("#clear").addEventListener("click", () => drawing.clear());
drawing.addEventListener("history", () => {
  undoButton.disabled = !drawing.canUndo;
});
drawing.addEventListener("change", () => markDirty());

document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") {
    e.preventDefault();
    drawing.undo();
  } else if (e.key === "b") setTool("brush");
  else if (e.key === "e") setTool("eraser");
  else if (e.key === "[") setSize(Math.max(1, drawing.size - 2));
  else if (e.key === "]") setSize(Math.min(64, drawing.size + 2));
});

setColor(settings.color ?? SWATCHES[0]);
setSize(settings.size ?? 10);
setTool("brush");

// --- output ---------------------------------------------------------------------------

const output = $("#output");
const outputCtx = output.getContext("2d");
const outputInfo = $("#output-info");
let shownSeq = -1;

async function bitmapOf(result) {
  if (result.ct === "raw/rgb8" || result.ct === "raw/rgba8") {
    const channels = result.ct === "raw/rgb8" ? 3 : 4;
    const rgba = new Uint8ClampedArray(result.w * result.h * 4);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += channels) {
      rgba[i] = result.payload[j];
      rgba[i + 1] = result.payload[j + 1];
      rgba[i + 2] = result.payload[j + 2];
      rgba[i + 3] = channels === 4 ? result.payload[j + 3] : 255;
    }
    return new ImageData(rgba, result.w, result.h);
  }
  return createImageBitmap(new Blob([result.payload], { type: result.ct }));
}

async function showResult(result, session) {
  let picture;
  try {
    picture = await bitmapOf(result);
  } catch (error) {
    notify({ title: "The answer could not be shown", detail: `${result.ct}: ${error.message}`, key: "decode" });
    return;
  }
  if (session !== current || result.seq <= shownSeq) {
    picture.close?.();
    return; // a newer answer is already on screen
  }
  shownSeq = result.seq;
  if (output.width !== picture.width || output.height !== picture.height) {
    output.width = picture.width;
    output.height = picture.height;
  }
  const { width, height } = picture;
  if (picture instanceof ImageData) outputCtx.putImageData(picture, 0, 0);
  else {
    outputCtx.drawImage(picture, 0, 0);
    picture.close();
  }
  output.dataset.seq = String(result.seq);
  output.dataset.results = String(Number(output.dataset.results) + 1);
  $("#output-empty").hidden = true;
  outputInfo.textContent = `${current?.client.pipeline ?? ""} · ${width}×${height} · ${result.ct} · #${result.seq}`;
}

// --- streaming --------------------------------------------------------------------------

let current = null; // { client, id }: the session on screen
let dirty = false;
let sending = false;
let lastSent = -Infinity;
let lastSentSeq = -1;
let sendTimer = null;
let pendingParams = null; // changes made while not connected

function rate() {
  return Number($("#rate").value) || 12;
}

function markDirty() {
  dirty = true;
  pump();
}

/** Send the canvas when it changed, at most `rate` times a second, and under `all`
    only when the engine has room (the client's back-pressure). */
async function pump() {
  if (sending || !dirty || !current || current.client.state !== State.OPEN) return;
  const wait = lastSent + 1000 / rate() - performance.now();
  if (wait > 0) {
    if (!sendTimer) {
      sendTimer = setTimeout(() => {
        sendTimer = null;
        pump();
      }, wait);
    }
    return;
  }
  const { client } = current;
  sending = true;
  try {
    await client.ready();
    dirty = false;
    lastSent = performance.now();
    const blob = await drawing.encode("image/jpeg", 0.9);
    const bytes = new Uint8Array(await blob.arrayBuffer());
    if (client.state === State.OPEN && current?.client === client) {
      lastSentSeq = client.sendFrameNow(bytes, { ct: "image/jpeg" });
      stats.sent += 1;
    } else {
      dirty = true;
    }
  } catch (error) {
    dirty = true; // dropped meanwhile: sent again once resumed
    if (error?.code !== "unavailable" && error?.code !== "closed") notifyError(error);
  } finally {
    sending = false;
  }
  if (dirty) pump();
}

function showSession(id) {
  document.body.dataset.session = id ?? "";
  $("#session-info").hidden = !id;
  $("#session-id").textContent = id ?? "";
  $("#session-id").title = id ?? "";
}

let statsTimer = null;

async function pollServerStats() {
  const client = current?.client;
  if (!client || client.state !== State.OPEN) return;
  try {
    const server = await client.stats();
    readout.errors.title = `server: ${server.frames_in} in, ${server.frames_out} out, ${server.errors} errors, ${server.queued ?? 0} queued`;
  } catch {
    // the next poll tries again; a dropped connection shows in the status
  }
}

/** Start a session with the picked pipeline, drain and params (closing the old one). */
async function openSession() {
  const old = current;
  current = null;
  if (old) old.client.close({ discard: true }).catch(() => {});
  shownSeq = -1;
  lastSentSeq = -1;
  resetStats();
  pendingParams = null;
  const pipeline = $("#pipeline").value;
  const drain = document.querySelector("input[name=drain]:checked").value;
  const params = nonDefault(settings.params[pipeline] ?? {});
  const client = new EaselClient(ORIGIN, { pipeline, drain, params, apiKey: apiKey() });
  const session = { client };
  current = session;
  setStatus("connecting", "Connecting…");

  client.on("state", ({ state, attempt }) => {
    if (session !== current) return;
    if (state === State.RECONNECTING) setStatus("reconnecting", attempt > 1 ? `Reconnecting… (${attempt})` : "Reconnecting…");
    else if (state === State.CONNECTING) setStatus("connecting", "Connecting…");
  });
  client.on("open", (welcome) => {
    if (session !== current) return;
    showSession(welcome.session);
    statusEl.dataset.resumes = String(client.resumes);
    statusEl.dataset.busy = "false";
    setStatus("open", welcome.resumed ? "Live · resumed" : "Live");
    if (welcome.created && old !== null) dismiss("error:session_closed");
    if (pendingParams) {
      const patch = pendingParams;
      pendingParams = null;
      applyParams(patch);
    }
    markDirty();
  });
  client.on("result", (result) => {
    if (session !== current) return;
    stats.answered += 1;
    stats.superseded += result.superseded;
    stats.arrivals.push(performance.now());
    if (result.rtt !== null) {
      stats.rtts.push(result.rtt);
      if (stats.rtts.length > 20) stats.rtts.shift();
    }
    stats.timings = result.timings;
    showResult(result, session);
  });
  client.on("error", (error) => {
    if (session !== current) return;
    stats.errors += 1;
    if (error.fatal && error.code === "unauthorized") askForKey();
    notifyError(error);
  });
  client.on("event", ({ name, data }) => {
    if (session !== current) return;
    if (name === "pipeline.restarting") {
      statusEl.dataset.busy = "true";
      statusText.textContent = "Pipeline restarting…";
      notify({ level: "warn", title: "The pipeline is restarting", detail: `${data.pipeline ?? "it"} failed and is being restarted; frames wait meanwhile.`, key: "pipeline" });
    } else if (name === "pipeline.ready") {
      statusEl.dataset.busy = "false";
      setStatus("open", "Live");
      notify({ level: "info", title: "The pipeline is back", detail: `${data.pipeline ?? "it"} runs again.`, key: "pipeline" });
    } else if (name === "session.expiring") {
      notify({ level: "warn", title: "The session is about to expire", detail: JSON.stringify(data), key: "expiring" });
    }
  });
  client.on("close", ({ error, reason }) => {
    if (session !== current) return;
    setStatus("closed", "Offline · click to retry");
    if (error?.code === "unauthorized" || error?.status === 401) {
      askForKey();
      notifyError(error);
      return;
    }
    if (error) notifyError(error, error.code === "session_closed" ? "starting a new session" : "");
    else notify({ level: "warn", title: "Disconnected", detail: reason || "the connection closed", key: "closed" });
    if (error?.code === "session_closed") setTimeout(() => session === current && openSession(), 1000);
  });

  clearInterval(statsTimer);
  statsTimer = setInterval(pollServerStats, 3000);
  try {
    await client.open();
  } catch (error) {
    // the close handler has said why
  }
}

statusEl.addEventListener("click", () => {
  if (statusEl.dataset.state === "closed") start();
});

// --- pipelines and params ----------------------------------------------------------

let pipelines = [];
const paramsForm = new ParamsForm($("#params"), (patch) => changeParams(patch));

function defaultsOf(name) {
  const schema = pipelines.find((p) => p.name === name)?.params_schema ?? {};
  const defaults = {};
  for (const [key, prop] of Object.entries(schema.properties ?? {})) defaults[key] = prop.default ?? null;
  return defaults;
}

function nonDefault(values) {
  const defaults = defaultsOf($("#pipeline").value);
  return Object.fromEntries(
    Object.entries(values).filter(([key, value]) => key in defaults && JSON.stringify(value) !== JSON.stringify(defaults[key])),
  );
}

function changeParams(patch) {
  const pipeline = $("#pipeline").value;
  settings.params[pipeline] = { ...(settings.params[pipeline] ?? {}), ...patch };
  saveSettings();
  applyParams(patch);
}

async function applyParams(patch) {
  const session = current;
  if (!session || session.client.state !== State.OPEN) {
    pendingParams = { ...(pendingParams ?? {}), ...patch };
    return;
  }
  try {
    const params = await session.client.setParams(patch);
    if (session !== current) return;
    dismiss("error:bad_params");
    markDirty(); // show the new params on the current picture
    return params;
  } catch (error) {
    if (session !== current) return;
    if (error.code === "unavailable") {
      pendingParams = { ...(pendingParams ?? {}), ...patch };
      return;
    }
    notifyError(error);
    // show what the session really has
    paramsForm.show(session.client.params);
    settings.params[$("#pipeline").value] = { ...session.client.params };
    saveSettings();
  }
}

$("#params-reset").addEventListener("click", () => {
  const defaults = paramsForm.defaults();
  paramsForm.show(defaults);
  changeParams(defaults);
});

function describePipeline(p) {
  const bits = [p.kind !== p.name ? `kind ${p.kind}` : null, `${p.replicas} replica${p.replicas === 1 ? "" : "s"}`, p.ready ? null : "not ready"];
  $("#pipeline-note").textContent = bits.filter(Boolean).join(" · ");
}

function pickPipeline(name) {
  const pipeline = pipelines.find((p) => p.name === name) ?? pipelines[0];
  $("#pipeline").value = pipeline.name;
  describePipeline(pipeline);
  paramsForm.render(pipeline.params_schema, settings.params[pipeline.name] ?? {});
  $("#params-reset").hidden = !Object.keys(pipeline.params_schema?.properties ?? {}).length;
}

$("#pipeline").addEventListener("change", () => {
  settings.pipeline = $("#pipeline").value;
  saveSettings();
  pickPipeline(settings.pipeline);
  openSession();
});

for (const radio of document.querySelectorAll("input[name=drain]")) {
  radio.addEventListener("change", () => {
    settings.drain = radio.value;
    $("#drain-note").textContent = DRAIN_NOTES[radio.value];
    saveSettings();
    openSession();
  });
}

function showRate() {
  $("#rate-value").textContent = `${rate()} fps`;
}
$("#rate").addEventListener("input", () => {
  settings.rate = rate();
  saveSettings();
  showRate();
});

// --- API key -------------------------------------------------------------------------

function askForKey() {
  $("#auth").hidden = false;
  $("#api-key").focus();
}

$("#auth-form").addEventListener("submit", (e) => {
  e.preventDefault();
  try {
    sessionStorage.setItem(KEY_STORE, $("#api-key").value.trim());
  } catch {
    // without storage the key can't be kept: nothing else to do here
  }
  $("#auth").hidden = true;
  start();
});

// --- start ---------------------------------------------------------------------------

let retryDelay = 1000;

async function start() {
  setStatus("connecting", "Connecting…");
  try {
    pipelines = await listPipelines(ORIGIN, { apiKey: apiKey() });
  } catch (error) {
    setStatus("closed", "Offline · click to retry");
    if (error.status === 401) {
      askForKey();
      notifyError(error);
      return;
    }
    notifyError(error, "listing the pipelines");
    setTimeout(start, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
    return;
  }
  retryDelay = 1000;
  if (!pipelines.length) {
    setStatus("closed", "No pipelines");
    notify({ title: "The engine runs no pipeline", detail: "Start one (EASEL_PIPELINES or POST /api/v1/pipelines), then reload.", key: "none", ttl: 0 });
    return;
  }
  const select = $("#pipeline");
  select.replaceChildren(
    ...pipelines.map((p) => {
      const option = document.createElement("option");
      option.value = p.name;
      option.textContent = p.kind === p.name ? p.name : `${p.name} (${p.kind})`;
      return option;
    }),
  );
  const preferred = [settings.pipeline, "imagefx"].find((name) => pipelines.some((p) => p.name === name));
  pickPipeline(preferred ?? pipelines[0].name);
  openSession();
}

const drain = settings.drain === "all" ? "all" : "latest";
document.querySelector(`input[name=drain][value=${drain}]`).checked = true;
$("#drain-note").textContent = DRAIN_NOTES[drain];
if (settings.rate) $("#rate").value = String(settings.rate);
showRate();
start();
