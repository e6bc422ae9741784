// objtrack app: the page. Plain JavaScript, no libraries; talks to the JSON API of server.py.
// Coordinates: x, y in pixels of the video, (0, 0) the centre of the top-left pixel, so a click
// anywhere on the image gives -0.5 <= x <= W - 0.5 (the range the tracker accepts).
"use strict";

const state = {            // read by the end-to-end test: window.objtrackApp
  info: null,              // /api/info
  video: null,             // the open video (id, name, num_frames, height, width, fps, note)
  frame: 0,                // the frame shown
  points: [],              // queries: {t, x, y}
  job: null,               // the run going on or last run (as /api/job/<id> returns it)
  busy: false,
};
window.objtrackApp = state;

const $ = (id) => document.getElementById(id);
// point i's colour: the server's palette (the result video draws point i in the same colour)
const colour = (i) => {
  const palette = (state.info && state.info.palette) || ["#e6194b"];
  return palette[i % palette.length];
};
let frameImage = null;     // the preview <img> of the frame shown
let pollTimer = null;

// ---- messages ------------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

// ---- the API -------------------------------------------------------------------------------

async function api(method, url, body, raw = false) {
  const headers = {"X-Objtrack": "1"};
  if (body !== undefined && !raw) headers["Content-Type"] = "application/json";
  if (raw) headers["Content-Type"] = "application/octet-stream";
  let resp;
  try {
    resp = await fetch(url, {method, headers,
                             body: body === undefined ? undefined : (raw ? body : JSON.stringify(body))});
  } catch (err) {
    throw new Error("lost contact with the objtrack app server (" + err.message +
                    "); is it still running?");
  }
  let data = null;
  try { data = await resp.json(); } catch (err) { /* not JSON */ }
  if (!resp.ok) {
    throw new Error((data && data.error) || `the server answered ${resp.status} ${resp.statusText}`);
  }
  if (data === null) throw new Error(`the server answered ${resp.status} without a result`);
  return data;
}

function setBusy(busy, label = "") {
  state.busy = busy;
  for (const id of ["example-button", "run-button", "clear-points"]) $(id).disabled = busy;
  $("file-input").disabled = busy;
  document.querySelectorAll("#path-form button").forEach((b) => { b.disabled = busy; });
  $("stage-label").textContent = label;
  $("cancel-button").hidden = !(busy && state.job && state.job.state === "running");
}

// ---- opening a video -----------------------------------------------------------------------

async function openWith(label, request) {
  if (state.busy) return;
  clearMessage();
  setBusy(true, "");
  $("video-info").textContent = label;
  try {
    const video = await request();
    state.video = video;
    state.points = [];
    state.frame = 0;
    state.job = null;
    $("result").hidden = true;
    $("viewer").hidden = false;
    $("run-panel").hidden = false;
    $("frame-slider").max = String(video.num_frames - 1);
    $("video-info").textContent = `${video.name}: ${video.num_frames} frames, ` +
        `${video.width}x${video.height} px, ${video.fps} fps`;
    if (video.note) showMessage(video.note, "warn");
    renderPoints();
    showFrame(0);
  } catch (err) {
    $("video-info").textContent = state.video ? `${state.video.name} stays open` : "";
    showMessage(err.message);
  } finally {
    setBusy(false);
  }
}

function uploadFile(file) {
  const limit = state.info ? state.info.max_upload_mb : Infinity;
  if (file.size > limit * 1048576) {
    showMessage(`${file.name} is ${(file.size / 1048576).toFixed(0)} MB; uploads are limited to ` +
                `${limit} MB (objtrack app --max-upload-mb), or open it by its path.`);
    return;
  }
  openWith(`uploading ${file.name} ...`,
           () => api("POST", "/api/open/upload?name=" + encodeURIComponent(file.name), file, true));
}

// ---- the frame and the clicks --------------------------------------------------------------

function displayWidth() {
  const v = state.video;
  const room = $("stage").clientWidth - 36;
  return Math.max(120, Math.min(room, Math.max(v.width, Math.min(720, 4 * v.width))));
}

function showFrame(t) {
  const v = state.video;
  if (!v) return;
  t = Math.max(0, Math.min(v.num_frames - 1, Math.round(t)));
  state.frame = t;
  $("frame-slider").value = String(t);
  $("frame-label").textContent = `frame ${t} of 0-${v.num_frames - 1}`;
  const img = new Image();
  img.onload = () => {
    if (state.frame !== t) return;  // a later frame was asked for meanwhile
    frameImage = img;
    drawFrame();
  };
  img.onerror = () => showMessage(`frame ${t} could not be loaded from the server`);
  img.src = `/api/video/${v.id}/frame/${t}`;
}

function drawFrame() {
  const v = state.video, canvas = $("frame-canvas");
  if (!v || !frameImage) return;
  canvas.width = frameImage.naturalWidth;
  canvas.height = frameImage.naturalHeight;
  const w = displayWidth();
  canvas.style.width = `${w}px`;
  canvas.style.height = `${(w * v.height) / v.width}px`;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(frameImage, 0, 0);
  const sx = canvas.width / v.width, sy = canvas.height / v.height;
  const r = Math.max(3, 6 * canvas.width / w);
  state.points.forEach((p, i) => {
    if (p.t !== state.frame) return;
    const cx = (p.x + 0.5) * sx, cy = (p.y + 0.5) * sy;
    ctx.beginPath();
    ctx.arc(cx, cy, r, 0, 2 * Math.PI);
    ctx.fillStyle = colour(i);
    ctx.fill();
    ctx.lineWidth = Math.max(1, r / 3);
    ctx.strokeStyle = "#000";
    ctx.stroke();
    ctx.font = `${Math.round(2.2 * r)}px sans-serif`;
    ctx.fillStyle = "#fff";
    ctx.strokeText(String(i + 1), cx + 1.3 * r, cy - 1.1 * r);
    ctx.fillText(String(i + 1), cx + 1.3 * r, cy - 1.1 * r);
  });
}

function onStageClick(ev) {
  const v = state.video;
  if (!v || state.busy) return;
  const rect = $("frame-canvas").getBoundingClientRect();
  const x = ((ev.clientX - rect.left) / rect.width) * v.width - 0.5;
  const y = ((ev.clientY - rect.top) / rect.height) * v.height - 0.5;
  if (!(x >= -0.5 && x <= v.width - 0.5 && y >= -0.5 && y <= v.height - 0.5)) {
    showMessage(`That click is outside the frame (x ${x.toFixed(1)}, y ${y.toFixed(1)}; the ` +
                `frame is ${v.width}x${v.height} px): click on the image.`);
    return;
  }
  clearMessage();
  const round = (a) => Math.round(a * 100) / 100;
  state.points.push({t: state.frame, x: round(x), y: round(y)});
  renderPoints();
  drawFrame();
}

function renderPoints() {
  const body = document.querySelector("#points tbody");
  body.textContent = "";
  state.points.forEach((p, i) => {
    const row = document.createElement("tr");
    const cells = [`<span class="swatch" style="background:${colour(i)}"></span>${i + 1}`,
                   String(p.t), p.x.toFixed(2), p.y.toFixed(2)];
    for (const html of cells) {
      const td = document.createElement("td");
      td.innerHTML = html;
      row.appendChild(td);
    }
    const td = document.createElement("td");
    const goto = document.createElement("button");
    goto.textContent = "show";
    goto.title = "go to this point's frame";
    goto.onclick = () => showFrame(p.t);
    const del = document.createElement("button");
    del.textContent = "remove";
    del.onclick = () => { state.points.splice(i, 1); renderPoints(); drawFrame(); };
    td.append(goto, " ", del);
    row.appendChild(td);
    body.appendChild(row);
  });
  $("points").hidden = state.points.length === 0;
}

// ---- settings ------------------------------------------------------------------------------

function fillSettings() {
  const d = state.info.defaults;
  document.querySelectorAll("#advanced input[data-key]").forEach((input) => {
    input.value = String(d[input.dataset.key]);
  });
}

function readSettings() {
  const out = {};
  document.querySelectorAll("#advanced input[data-key]").forEach((input) => {
    out[input.dataset.key] = input.value.trim();
  });
  return out;
}

// ---- running -------------------------------------------------------------------------------

async function run() {
  if (state.busy || !state.video) return;
  clearMessage();
  if (state.points.length === 0) {
    showMessage("Click at least one point on the video first.");
    return;
  }
  const baselines = ["cmp-lk", "cmp-dis"].filter((id) => $(id).checked).map((id) => $(id).value);
  setBusy(true, "starting ...");
  $("progress").hidden = false;
  $("progress").value = 0;
  $("result").hidden = true;
  try {
    const started = await api("POST", "/api/run", {video: state.video.id, points: state.points,
                                                   baselines, settings: readSettings()});
    if (started.warnings && started.warnings.length) {
      showMessage("Note: " + started.warnings.join("; "), "warn");
    }
    state.job = {id: started.job, state: "running"};
    $("cancel-button").hidden = false;
    $("cancel-button").disabled = false;
    poll(started.job);
  } catch (err) {
    $("progress").hidden = true;
    setBusy(false);
    showMessage(err.message);
  }
}

function poll(jobId) {
  clearTimeout(pollTimer);
  api("GET", `/api/job/${jobId}`).then((job) => {
    state.job = job;
    $("progress").value = job.progress;
    $("stage-label").textContent = `${job.stage} (${Math.round(100 * job.progress)} %, ${job.elapsed} s)`;
    if (job.state === "running") {
      pollTimer = setTimeout(() => poll(jobId), 300);
      return;
    }
    const ended = {done: `done in ${job.elapsed} s`, cancelled: `cancelled after ${job.elapsed} s`};
    setBusy(false, ended[job.state] || "failed");
    $("progress").hidden = job.state !== "done";
    if (job.state === "done") showResult(job);
    else if (job.state === "cancelled") showMessage("The run was cancelled; nothing was written.", "warn");
    else showMessage(job.error || "the run failed");
  }).catch((err) => {
    setBusy(false, "");
    $("progress").hidden = true;
    showMessage(err.message);
  });
}

// Stops the run going on: the server stops it at the tracker's next window (or the next block
// of frames drawn) and frees the run slot; the poll then reports "cancelled".
async function cancelRun() {
  if (!state.job || state.job.state !== "running") return;
  $("cancel-button").disabled = true;
  try {
    await api("POST", `/api/job/${state.job.id}/cancel`, {});
  } catch (err) {
    showMessage(err.message);
  }
}

function showResult(job) {
  const r = job.result;
  const video = $("result-video");
  video.src = `${r.files.video}?run=${job.id}`;
  video.load();
  video.play().catch(() => { /* autoplay may be refused; the controls remain */ });
  for (const ext of ["npz", "csv", "json"]) {
    const a = $(`dl-${ext}`);
    a.href = r.files[ext];
    a.download = `${r.download_stem}.${ext}`;
  }
  $("dl-mp4").href = r.files.video;
  $("dl-mp4").download = `${r.download_stem}.mp4`;
  const names = {objtrack_jax: "objtrack_jax", lk: "Lucas-Kanade", dis: "DIS flow"};
  $("result-info").textContent = `${r.num_points} points through ${r.num_frames} frames; ` +
      `panels: ${r.methods.map((m) => names[m] || m).join(" | ")}; tracking took ` +
      `${r.seconds.track.toFixed(1)} s (the first run includes compiling the model).`;
  $("result").hidden = false;
}

// ---- wiring --------------------------------------------------------------------------------

async function init() {
  $("file-input").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (file) uploadFile(file);
  });
  $("example-button").onclick = () => openWith("generating an example scene ...",
                                               () => api("POST", "/api/open/example", {}));
  $("path-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const path = $("path-input").value;
    openWith(`opening ${path} ...`, () => api("POST", "/api/open/path", {path}));
  });
  $("stage").addEventListener("click", onStageClick);
  $("frame-slider").addEventListener("input", (ev) => showFrame(Number(ev.target.value)));
  $("prev-frame").onclick = () => showFrame(state.frame - 1);
  $("next-frame").onclick = () => showFrame(state.frame + 1);
  $("clear-points").onclick = () => { state.points = []; renderPoints(); drawFrame(); };
  $("reset-settings").onclick = fillSettings;
  $("run-button").onclick = run;
  $("cancel-button").onclick = cancelRun;
  document.addEventListener("keydown", (ev) => {
    if (!state.video || ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
    if (ev.key === "ArrowLeft") showFrame(state.frame - 1);
    if (ev.key === "ArrowRight") showFrame(state.frame + 1);
  });
  window.addEventListener("resize", drawFrame);
  try {
    state.info = await api("GET", "/api/info");
    $("weights").textContent = `weights: ${state.info.weights}`;
    fillSettings();
    if (!state.info.allow_paths) {
      $("path-input").disabled = true;
      $("path-input").placeholder = "opening paths is off (the server listens beyond localhost)";
    }
  } catch (err) {
    showMessage(err.message);
  }
}

init();
