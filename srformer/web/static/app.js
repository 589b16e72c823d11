// srformer serve: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// It calls the server's API (see srformer/web/app.py): GET /api/models, POST /api/jobs, GET /api/jobs/<id>,
// GET /api/jobs/<id>/result, POST /api/jobs/<id>/cancel, DELETE /api/jobs/<id>.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 250;

const state = {
  models: [],
  file: null, // the chosen File
  inputUrl: null, // object URL of the file (the "before" image)
  inputSize: null, // [width, height] as the browser decodes it
  mode: "single", // or "compare"
  running: new Set(), // ids of unfinished jobs started by this page
  urls: [], // object URLs of results, revoked when replaced
};

// ---- zoom and pan, shared by every viewport of a view ---------------------------------------------------------

class View {
  constructor(viewports, onChange) {
    this.viewports = viewports;
    this.onChange = onChange || (() => {});
    this.zoom = 1;
    this.x = 0;
    this.y = 0;
    this.size = null; // [width, height] of the images shown (output pixels)
    for (const viewport of viewports) this.listen(viewport);
  }

  setSize(width, height) {
    this.size = [width, height];
    this.fit();
  }

  fit() {
    if (!this.size) return;
    const box = this.viewports[0].getBoundingClientRect();
    const [width, height] = this.size;
    this.zoom = Math.min(box.width / width, box.height / height, 4); // small images fill the view
    this.x = (box.width - width * this.zoom) / 2;
    this.y = (box.height - height * this.zoom) / 2;
    this.apply();
  }

  zoomAt(factor, px, py) {
    const zoom = Math.min(Math.max(this.zoom * factor, 0.02), 32);
    this.x = px - ((px - this.x) * zoom) / this.zoom;
    this.y = py - ((py - this.y) * zoom) / this.zoom;
    this.zoom = zoom;
    this.apply();
  }

  apply() {
    for (const viewport of this.viewports) {
      viewport.querySelector(".stage").style.transform =
        `translate(${this.x}px, ${this.y}px) scale(${this.zoom})`;
      viewport.classList.toggle("magnified", this.zoom > 1);
    }
    this.onChange(this);
  }

  listen(viewport) {
    let drag = null;
    viewport.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = viewport.getBoundingClientRect();
      this.zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    viewport.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX - this.x, y: event.clientY - this.y };
      viewport.setPointerCapture(event.pointerId);
      viewport.classList.add("dragging");
    });
    viewport.addEventListener("pointermove", (event) => {
      if (!drag) return;
      this.x = event.clientX - drag.x;
      this.y = event.clientY - drag.y;
      this.apply();
    });
    const end = () => {
      drag = null;
      viewport.classList.remove("dragging");
    };
    viewport.addEventListener("pointerup", end);
    viewport.addEventListener("pointercancel", end);
    viewport.addEventListener("dblclick", () => this.fit());
  }
}

// The before/after slider: the "after" image is clipped at the slider's place in the viewport.
function placeDivider(view) {
  const viewport = $("ba-viewport");
  const fraction = $("slider").value / 1000;
  const left = fraction * viewport.clientWidth;
  const divider = $("divider");
  divider.style.left = `${left}px`;
  divider.hidden = !view.size;
  const cut = Math.max(0, (left - view.x) / view.zoom); // in image pixels
  $("after").style.clipPath = `inset(0 0 0 ${cut}px)`;
}

const single = new View([$("ba-viewport")], placeDivider);
const pair = new View([$("a-viewport"), $("b-viewport")]);
$("slider").addEventListener("input", () => placeDivider(single));
window.addEventListener("resize", () => placeDivider(single));

// ---- talking to the server ------------------------------------------------------------------------------------

async function failure(response) {
  try {
    const body = await response.json();
    if (body && body.error) return new Error(body.error);
  } catch (_) {
    // not JSON: fall through
  }
  return new Error(`the server answered ${response.status} ${response.statusText}`);
}

async function startJob(model) {
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  form.append("model", model);
  form.append("scale", $("scale").value);
  const response = await fetch("/api/jobs", { method: "POST", body: form });
  if (!response.ok) throw await failure(response);
  const job = await response.json();
  state.running.add(job.id);
  return job;
}

// Polls the job until it ends; onProgress(status) on every answer; returns the final status and the result Blob.
async function finishJob(job, onProgress) {
  try {
    for (;;) {
      const response = await fetch(`/api/jobs/${job.id}`, { cache: "no-store" });
      if (!response.ok) throw await failure(response);
      const status = await response.json();
      onProgress(status);
      if (status.state === "done") {
        const result = await fetch(`/api/jobs/${job.id}/result`, { cache: "no-store" });
        if (!result.ok) throw await failure(result);
        return { status, blob: await result.blob() };
      }
      if (status.state === "failed") throw new Error(status.error);
      if (status.state === "cancelled") throw new Error("cancelled");
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    state.running.delete(job.id);
    fetch(`/api/jobs/${job.id}`, { method: "DELETE" }).catch(() => {}); // the result is in the page now
  }
}

function cancelAll(beacon) {
  for (const id of state.running) {
    if (beacon) navigator.sendBeacon(`/api/jobs/${id}/cancel`);
    else fetch(`/api/jobs/${id}/cancel`, { method: "POST" }).catch(() => {});
  }
}
// A closed page cancels its jobs (and the server cancels jobs nobody polls, should this not arrive).
window.addEventListener("pagehide", () => cancelAll(true));

// ---- the page -------------------------------------------------------------------------------------------------

function say(text, isError) {
  $("message").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

function progressText(status) {
  if (status.state === "queued") {
    return status.position ? `waiting: ${status.position} ahead on ${status.model}` : `starting ${status.model}`;
  }
  if (status.total) return `${status.model}: tile ${status.done} / ${status.total}`;
  return `${status.model}: running`;
}

function showProgress(statuses) {
  const bar = $("progress");
  const total = statuses.reduce((sum, s) => sum + (s.total || 1), 0);
  const done = statuses.reduce((sum, s) => sum + (s.state === "done" ? s.total || 1 : s.done || 0), 0);
  bar.hidden = false;
  bar.max = total;
  bar.value = done;
  say(statuses.map(progressText).join(" · "));
}

function modelsFor(scale) {
  return state.models.filter((m) => m.scale === null || m.scale === scale);
}

function fillModels() {
  const scale = Number($("scale").value);
  for (const [id, fallback] of [["model", 0], ["model-b", 1]]) {
    const select = $(id);
    const before = select.value;
    select.replaceChildren();
    for (const m of modelsFor(scale)) {
      const option = new Option(`${m.name}: ${m.description}`, m.name);
      select.add(option);
    }
    const names = [...select.options].map((o) => o.value);
    select.value = names.includes(before) ? before : names[Math.min(fallback, names.length - 1)] || "";
  }
}

async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) throw await failure(response);
  const info = await response.json();
  state.models = info.models;
  for (const scale of info.scales) $("scale").add(new Option(`x${scale}`, String(scale)));
  $("scale").value = String(info.scales.includes(info.default_scale) ? info.default_scale : info.scales[0]);
  fillModels();
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  if (state.inputUrl) URL.revokeObjectURL(state.inputUrl);
  state.inputUrl = URL.createObjectURL(file);
  state.inputSize = null;
  $("file-label").textContent = file.name;
  const probe = new Image();
  probe.onload = () => {
    state.inputSize = [probe.naturalWidth, probe.naturalHeight];
    say(`${file.name}: ${probe.naturalWidth}×${probe.naturalHeight}. Choose the model and press ${$("go").textContent}.`);
  };
  probe.onerror = () => say(`${file.name}: this browser cannot show it, but the server may still upscale it.`);
  probe.src = state.inputUrl;
  $("go").disabled = false;
}

function setMode(mode) {
  state.mode = mode;
  $("tab-single").classList.toggle("active", mode === "single");
  $("tab-compare").classList.toggle("active", mode === "compare");
  $("single").hidden = mode !== "single";
  $("compare").hidden = mode !== "compare";
  for (const el of document.querySelectorAll(".compare-only")) el.hidden = mode !== "compare";
  for (const el of document.querySelectorAll(".single-only")) el.hidden = mode === "compare";
  $("go").textContent = mode === "compare" ? "Compare" : "Upscale";
  (mode === "single" ? single : pair).fit();
}

function keepUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

function showImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("this browser cannot show the result; download it instead"));
    img.src = url;
  });
}

function describe(status, size) {
  const seconds = status.seconds === null ? "" : ` in ${status.seconds.toFixed(1)} s`;
  const reason = status.reason ? ` (auto: ${status.reason})` : "";
  const what = status.description && status.description !== status.model ? ` [${status.description}]` : "";
  return `${status.model}${what}${reason}${seconds}` + (size ? `, ${size[0]}×${size[1]}` : "");
}

function offerDownload(link, url, name) {
  link.href = url;
  link.download = name;
  link.hidden = false;
}

async function runSingle() {
  const job = await startJob($("model").value);
  const { status, blob } = await finishJob(job, (s) => showProgress([s]));
  const url = keepUrl(blob);
  offerDownload($("download"), url, status.download_name);
  const after = await showImage($("after"), url);
  const [width, height] = [after.naturalWidth, after.naturalHeight];
  after.width = width;
  after.height = height;
  const before = $("before");
  before.width = width; // the input, nearest-neighbour at the output size
  before.height = height;
  await showImage(before, state.inputUrl).catch(() => {});
  single.setSize(width, height);
  $("info").textContent = describe(status, [width, height]);
  say("Done. Drag the slider; wheel to zoom, drag to pan.");
}

async function runCompare() {
  const models = [$("model").value, $("model-b").value];
  const jobs = [];
  for (const model of models) jobs.push(await startJob(model));
  const latest = [...jobs];
  const results = await Promise.all(
    jobs.map((job, i) => finishJob(job, (s) => {
      latest[i] = s;
      showProgress(latest);
    })),
  );
  let size = null;
  for (const [i, side] of ["a", "b"].entries()) {
    const { status, blob } = results[i];
    const url = keepUrl(blob);
    offerDownload($(`download-${side}`), url, status.download_name);
    const img = await showImage($(`result-${side}`), url);
    img.width = img.naturalWidth;
    img.height = img.naturalHeight;
    size = size || [img.naturalWidth, img.naturalHeight];
    $(`caption-${side}`).textContent = describe(status, [img.naturalWidth, img.naturalHeight]);
  }
  pair.setSize(size[0], size[1]);
  say("Done. Wheel to zoom, drag to pan: both sides follow.");
}

async function run() {
  for (const url of state.urls.splice(0)) URL.revokeObjectURL(url);
  $("go").disabled = true;
  $("stop").hidden = false;
  say("uploading...");
  try {
    await (state.mode === "compare" ? runCompare() : runSingle());
  } catch (err) {
    cancelAll(false);
    say(err.message === "cancelled" ? "Cancelled." : err.message, err.message !== "cancelled");
  } finally {
    $("go").disabled = false;
    $("stop").hidden = true;
    $("progress").hidden = true;
  }
}

$("file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
$("scale").addEventListener("change", fillModels);
$("go").addEventListener("click", run);
$("stop").addEventListener("click", () => cancelAll(false));
$("tab-single").addEventListener("click", () => setMode("single"));
$("tab-compare").addEventListener("click", () => setMode("compare"));
for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => {
    event.preventDefault();
    $("drop").classList.add("over");
  });
}
document.addEventListener("dragleave", () => $("drop").classList.remove("over"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").classList.remove("over");
  chooseFile(event.dataTransfer.files[0]);
});

loadModels().catch((err) => say(`cannot list the models: ${err.message}`, true));
