// omni's playground: the Images API from a page, no build step, nothing fetched from elsewhere.
// The API key lives in this page's memory only (never stored); images stream in as Server-Sent
// Events read from fetch() (EventSource cannot POST).
"use strict";

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };
let sourceImage = null; // the uploaded picture, as an <img>
let maskPainted = false;

function headers() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function fields() {
  const body = { prompt: $("prompt").value, size: $("size").value, stream: true };
  const previews = parseInt($("partial-images").value, 10);
  body.partial_images = Number.isInteger(previews) ? previews : 0;
  for (const [id, name] of [["steps", "num_inference_steps"], ["seed", "seed"]]) {
    const value = parseInt($(id).value, 10);
    if (Number.isInteger(value)) body[name] = value;
  }
  const strength = parseFloat($("strength").value);
  if (sourceImage && Number.isFinite(strength)) body.strength = strength;
  return body;
}

function canvasBlob(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function editForm(body) {
  const [width, height] = body.size.split("x").map(Number);
  const picture = document.createElement("canvas");
  picture.width = width; picture.height = height;
  picture.getContext("2d").drawImage(sourceImage, 0, 0, width, height);
  const form = new FormData();
  for (const [name, value] of Object.entries(body)) form.append(name, String(value));
  form.append("image", await canvasBlob(picture), "image.png");
  if (maskPainted) {
    // The strokes (shown in a see-through color) become diffusers' mask: white = redraw, black = keep.
    const mask = document.createElement("canvas");
    mask.width = width; mask.height = height;
    const pen = mask.getContext("2d");
    pen.drawImage($("mask"), 0, 0, width, height);
    const pixels = pen.getImageData(0, 0, width, height);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const level = pixels.data[i + 3] > 0 ? 255 : 0;
      pixels.data.set([level, level, level, 255], i);
    }
    pen.putImageData(pixels, 0, 0);
    form.append("mask", await canvasBlob(mask), "mask.png");
  }
  return form;
}

function showPartial(event) {
  const img = document.createElement("img");
  img.className = "partial";
  img.alt = `preview ${event.partial_image_index + 1}`;
  img.src = `data:image/${event.output_format};base64,${event.b64_json}`;
  $("partials").appendChild(img);
  status(`preview ${event.partial_image_index + 1} ...`);
}

function showFinal(event) {
  $("final").src = `data:image/${event.output_format};base64,${event.b64_json}`;
  $("final").hidden = false;
  status(`done: ${event.size}, ${event.usage.total_tokens} tokens`);
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart()).join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}

async function generate(submitEvent) {
  submitEvent.preventDefault();
  $("partials").replaceChildren();
  $("final").hidden = true;
  $("generate").disabled = true;
  status("queued ...");
  try {
    const body = fields();
    const editing = sourceImage !== null;
    const response = await fetch(editing ? "/v1/images/edits" : "/v1/images/generations", editing
      ? { method: "POST", headers: headers(), body: await editForm(body) }
      : { method: "POST", headers: { ...headers(), "Content-Type": "application/json" },
          body: JSON.stringify(body) });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      const error = answer.error || {};
      status(`error ${response.status}${error.param ? ` (${error.param})` : ""}: ${error.message || response.statusText}`);
      return;
    }
    await readEvents(response, (event) => {
      if (event.type.endsWith(".partial_image")) showPartial(event);
      else if (event.type.endsWith(".completed")) showFinal(event);
      else if (event.type === "error") status(`error: ${event.error.message}`);
    });
  } catch (error) {
    status(`error: ${error}`);
  } finally {
    $("generate").disabled = false;
  }
}

function setUpMask() {
  const canvas = $("mask");
  const pen = canvas.getContext("2d");
  let drawing = false;
  const paint = (event) => {
    if (!drawing) return;
    const box = canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * canvas.width;
    const y = ((event.clientY - box.top) / box.height) * canvas.height;
    pen.fillStyle = "rgba(255, 0, 128, 0.55)";
    pen.beginPath(); pen.arc(x, y, 14, 0, 2 * Math.PI); pen.fill();
    maskPainted = true;
  };
  canvas.addEventListener("pointerdown", (event) => { drawing = true; paint(event); });
  canvas.addEventListener("pointermove", paint);
  window.addEventListener("pointerup", () => { drawing = false; });
  $("clear-mask").addEventListener("click", () => {
    pen.clearRect(0, 0, canvas.width, canvas.height); maskPainted = false; showSource();
  });
}

function showSource() {
  // The picture under the mask strokes, dimmed, so a person sees what they paint over.
  const canvas = $("mask");
  const pen = canvas.getContext("2d");
  if (!sourceImage || maskPainted) return;
  canvas.style.backgroundImage = `url(${sourceImage.src})`;
  canvas.style.backgroundSize = "cover";
  pen.clearRect(0, 0, canvas.width, canvas.height);
}

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  if (!file) { sourceImage = null; $("mask-area").hidden = true; return; }
  const img = new Image();
  img.onload = () => { sourceImage = img; maskPainted = false; $("mask-area").hidden = false; showSource(); };
  img.src = URL.createObjectURL(file);
});

async function pollQueue() {
  try {
    const response = await fetch("/metrics", { headers: headers() });
    if (response.ok) {
      const line = (await response.text()).split("\n").find((text) => text.startsWith("omni_queue_depth "));
      if (line) $("queue-depth").textContent = String(Math.round(parseFloat(line.split(" ")[1])));
    }
  } catch (_) { /* the server is restarting: try again later */ }
}

$("form").addEventListener("submit", generate);
setUpMask();
pollQueue();
setInterval(pollQueue, 2000);
