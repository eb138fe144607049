// The ferkit page: photo, webcam and video modes over the REST API of the server that served it.
// Plain browser JavaScript, no framework and nothing fetched from anywhere else.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const timings = { firstResultMs: null };
window.ferkit = timings; // read by the browser test: time from navigation start to the first drawn result

// ------------------------------------------------------------------------------------------ API access
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function authHeaders() {
  const token = sessionStorage.getItem("ferkit-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const headers = { ...authHeaders(), ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(API + path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, "the server cannot be reached; is `ferkit serve` still running?");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { /* not JSON: use the status below */ }
  if (!response.ok) {
    if (response.status === 401) askForToken();
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

function postFile(path, file, name) {
  // A multipart file field: its name comes back in the server's messages; the type is read from the bytes.
  const form = new FormData();
  form.append("file", file, name || file.name || "upload");
  return api(path, { method: "POST", body: form });
}

function askForToken() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("ferkit-token", $("token-input").value.trim());
  $("token-form").hidden = true;
  hideError();
  loadModelInfo();
});

function showError(err) {
  const box = $("error");
  box.textContent = err instanceof ApiError || err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function hideError() { $("error").hidden = true; }

// ------------------------------------------------------------------------------------------ model info
async function loadModelInfo() {
  try {
    const info = await api("/models");
    const card = info.card && info.card.accuracy != null
      ? `, ${(info.card.accuracy * 100).toFixed(1)}% accuracy on FER2013 ${info.card.split || ""}` : "";
    $("model-info").textContent =
      `model ${info.model} (${info.arch || "custom"}, ${info.backend}${card}); detector ${info.detector}`;
    labels = info.labels;
  } catch (err) {
    $("model-info").textContent = "model description unavailable";
    if (err.status !== 401) showError(err);
  }
}
let labels = null;

// ------------------------------------------------------------------------------------------ drawing
function pct(p) { return `${Math.round(p * 100)}%`; }

function emotionClass(emotion) { return `emo-${(emotion || "none").replace(/[^a-z]/gi, "")}`; }

function drawBoxes(stage, result) {
  stage.querySelectorAll(".face-box").forEach((el) => el.remove());
  result.faces.forEach((face, i) => {
    const [x, y, w, h] = face.box;
    const box = document.createElement("div");
    box.className = `face-box ${emotionClass(face.emotion)}`;
    box.style.left = `${(100 * x) / result.width}%`;
    box.style.top = `${(100 * y) / result.height}%`;
    box.style.width = `${(100 * w) / result.width}%`;
    box.style.height = `${(100 * h) / result.height}%`;
    if (y < 0.06 * result.height) box.classList.add("low"); // no room above: label under the box
    const label = document.createElement("span");
    label.className = "face-label";
    label.textContent = face.emotion ? `${i + 1}. ${face.emotion} ${pct(face.probs[face.emotion])}` : `${i + 1}. too small`;
    box.append(label);
    stage.append(box);
  });
}

function faceCard(face, i) {
  const li = document.createElement("li");
  li.className = `face-card ${emotionClass(face.emotion)}`;
  const title = document.createElement("h3");
  title.textContent = face.emotion ? `Face ${i + 1}: ${face.emotion} ${pct(face.probs[face.emotion])}`
    : `Face ${i + 1}: too small to classify`;
  li.append(title);
  const names = labels || Object.keys(face.probs);
  if (face.emotion) {
    const bars = document.createElement("div");
    bars.className = "bars";
    bars.setAttribute("role", "img");
    bars.setAttribute("aria-label", names.map((n) => `${n} ${pct(face.probs[n] || 0)}`).join(", "));
    for (const name of names) {
      const p = face.probs[name] || 0;
      const label = document.createElement("span");
      label.textContent = name;
      const bar = document.createElement("span");
      bar.className = `bar ${emotionClass(name)}`;
      const fill = document.createElement("span");
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = pct(p);
      bars.append(label, bar, value);
    }
    li.append(bars);
  }
  return li;
}

// ------------------------------------------------------------------------------------------ photo mode
let currentPhoto = null;

async function predictPhoto(file) {
  hideError();
  currentPhoto = file;
  document.body.dataset.state = "busy";
  const img = $("photo-img");
  const url = URL.createObjectURL(file);
  try {
    const result = await postFile("/predict", file);
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the browser cannot display this image, though the server read it"));
      img.src = url;
    });
    $("photo-result").hidden = false;
    drawBoxes($("photo-stage"), result);
    const list = $("faces");
    list.replaceChildren(...result.faces.map(faceCard));
    const n = result.faces.length;
    $("photo-summary").textContent = n ? `${n} face${n === 1 ? "" : "s"}` : "No face found in this photo.";
    $("explain-button").disabled = n === 0;
    if (timings.firstResultMs === null) {
      timings.firstResultMs = performance.now();
      document.body.dataset.firstResultMs = String(Math.round(timings.firstResultMs));
    }
    document.body.dataset.state = "done";
  } catch (err) {
    document.body.dataset.state = "error";
    showError(err);
  }
}

async function explainPhoto() {
  if (!currentPhoto) return;
  hideError();
  const method = $("explain-method").value;
  const button = $("explain-button");
  button.disabled = true;
  document.body.dataset.explain = "busy";
  try {
    const result = await postFile(`/explain?method=${encodeURIComponent(method)}`, currentPhoto);
    const cards = $("faces").children;
    result.faces.forEach((face, i) => {
      const card = cards[i];
      if (!card) return;
      card.querySelectorAll(".overlay").forEach((el) => el.remove());
      if (face.explanation) {
        const figure = document.createElement("figure");
        figure.className = "overlay";
        const img = document.createElement("img");
        img.className = "overlay-img";
        img.alt = `${method} heatmap for face ${i + 1}`;
        img.src = `data:image/png;base64,${face.explanation.png}`;
        const caption = document.createElement("figcaption");
        caption.className = "muted";
        caption.textContent = `${method}: where the model looked for ${face.explanation.target}`;
        figure.append(img, caption);
        card.append(figure);
      }
    });
    document.body.dataset.explain = "done";
  } catch (err) {
    document.body.dataset.explain = "error";
    showError(err);
  } finally {
    button.disabled = false;
  }
}

const drop = $("drop");
$("file-input").addEventListener("change", (e) => { if (e.target.files[0]) predictPhoto(e.target.files[0]); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) predictPhoto(e.dataTransfer.files[0]);
});
$("explain-button").addEventListener("click", explainPhoto);

// ------------------------------------------------------------------------------------------ webcam mode
const FRAME_INTERVAL_MS = 250; // at most 4 frames a second, one request in flight
const FRAME_MAX_SIDE = 640;
let webcam = null;

async function startWebcam() {
  hideError();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError(new Error("this browser gives no camera access here (it allows cameras on https pages and on localhost only)"));
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    showError(new Error(`no camera: ${err.message || err.name}`));
    return;
  }
  const video = $("webcam-video");
  video.srcObject = stream;
  await video.play();
  webcam = { stream, frames: 0, started: performance.now() };
  $("webcam-button").textContent = "Stop the camera";
  document.body.dataset.webcam = "running";
  webcamLoop(webcam);
}

function stopWebcam() {
  if (!webcam) return;
  webcam.stream.getTracks().forEach((t) => t.stop());
  webcam = null;
  $("webcam-video").srcObject = null;
  $("webcam-stage").querySelectorAll(".face-box").forEach((el) => el.remove());
  $("webcam-button").textContent = "Start the camera";
  document.body.dataset.webcam = "stopped";
}

async function webcamLoop(session) {
  const video = $("webcam-video");
  const canvas = document.createElement("canvas");
  while (webcam === session) {
    const t0 = performance.now();
    if (video.videoWidth) {
      const scale = Math.min(1, FRAME_MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
      try {
        const result = await postFile("/predict", blob, "camera.jpg");
        if (webcam !== session) break;
        drawBoxes($("webcam-stage"), result);
        session.frames += 1;
        document.body.dataset.webcamFaces = String(result.faces.length);
        const ms = Math.round(performance.now() - t0);
        $("webcam-stats").textContent = `${result.faces.length} face(s), ${ms} ms per frame`;
      } catch (err) {
        showError(err);
        if (err.status === 401 || err.status === 0) { stopWebcam(); break; }
      }
    }
    const wait = FRAME_INTERVAL_MS - (performance.now() - t0);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

$("webcam-button").addEventListener("click", () => (webcam ? stopWebcam() : startWebcam()));

// ------------------------------------------------------------------------------------------ video mode
async function analyzeVideo(file) {
  hideError();
  $("video-result").hidden = true;
  $("video-progress").hidden = false;
  $("video-bar").value = 0;
  $("video-status").textContent = "uploading…";
  document.body.dataset.video = "busy";
  try {
    const job = await postFile("/video", file);
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const status = await api(`/jobs/${job.id}`);
      $("video-bar").value = status.progress;
      $("video-status").textContent = `${status.status}, ${pct(status.progress)}`;
      if (status.status === "failed") throw new Error(status.error || "the video analysis failed");
      if (status.status === "done") { showVideoResult(status.result); break; }
    }
    document.body.dataset.video = "done";
  } catch (err) {
    $("video-progress").hidden = true;
    document.body.dataset.video = "error";
    showError(err);
  }
}

function showVideoResult(result) {
  // result.summary: one entry per track (ferkit.video's TrackSummary.to_dict()).
  $("video-result").hidden = false;
  if (result.plot_png) $("video-plot").src = `data:image/png;base64,${result.plot_png}`;
  const table = $("video-summary");
  table.replaceChildren();
  const tracks = result.summary || [];
  const head = table.insertRow();
  for (const name of ["track", "seen", "frames", "dominant", "share of the time"]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.append(th);
  }
  if (!tracks.length) {
    table.insertRow().insertCell().textContent = "no face in this video";
    return;
  }
  for (const t of tracks) {
    const shares = Object.entries(t.share || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${pct(v)}`).join(", ");
    const row = table.insertRow();
    for (const text of [t.track_id, `${t.first_s.toFixed(1)}-${t.last_s.toFixed(1)} s`, t.frames,
      t.dominant || "-", shares || "-"]) row.insertCell().textContent = String(text);
  }
}

$("video-input").addEventListener("change", (e) => { if (e.target.files[0]) analyzeVideo(e.target.files[0]); });

// ------------------------------------------------------------------------------------------ tabs
for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("[role=tab]")) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (tab.id !== "tab-webcam") stopWebcam();
  });
}

loadModelInfo();
