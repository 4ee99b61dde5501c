// The console: the cameras (a card each: status, live picture, the people on it now; add and remove), the most
// recent stored tracks, and the search. Plain JavaScript against the service's own API. The API token (when the
// service has one) is asked for on the first 401 by the login form and kept for this browser tab only
// (sessionStorage); it travels in the Authorization header, never in a URL.
//
// Hooks for other console files (alerts.js, similar.js): `vtfpar.trackButtons` and `vtfpar.cameraButtons` take
// {label, onClick(track or stream status)} and each card gets those buttons; `vtfpar.api`, `vtfpar.json` and
// `vtfpar.text` are the calls and helpers below. A new section is a <section> in index.html and its own script.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("vtfpar-token"), chips: {}, cursor: null, query: null, waiting: [] };
const STATUS_EVERY_MS = 3000;
const PICTURE_EVERY_MS = 500; // after every camera's picture was fetched once, one at a time
const EVENTS_RETRY_MS = 3000;
const EMPTY = "No streams yet: add a camera below (its URL must lie under VTFPAR_STREAM_SOURCES).";

class NoToken extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    await askToken(state.token ? "That token was refused." : "");
    return api(path, options);
  }
  return response;
}

function askToken(why) {
  // Several requests may meet a 401 at once: one form, and all of them retry once a token is given (or fail
  // with NoToken once the form is cancelled, so that nothing waits forever).
  return new Promise((resolve, reject) => {
    state.waiting.push({ resolve, reject });
    $("token-why").textContent = why;
    const dialog = $("token-dialog");
    if (!dialog.open) dialog.showModal();
  });
}

$("token-form").addEventListener("submit", (event) => {
  const save = event.submitter && event.submitter.value === "save";
  if (save) {
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("vtfpar-token", state.token);
  }
  $("token-input").value = "";
  state.waiting.splice(0).forEach((w) => (save ? w.resolve() : w.reject(new NoToken("this needs the API token"))));
});
$("token-dialog").addEventListener("cancel", () => {
  state.waiting.splice(0).forEach((w) => w.reject(new NoToken("this needs the API token")));
});
$("token-button").addEventListener("click", () => askToken("").then(refresh, () => {}));

async function json(path, options) {
  const response = await api(path, options);
  if (response.status === 204) return null;
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : response.statusText);
  return body;
}

// Images behind the token cannot be plain <img src>: fetched with the header, shown from a blob.
async function image(url, alt) {
  const img = document.createElement("img");
  img.alt = alt;
  const response = await api(url);
  if (response.ok) {
    img.src = URL.createObjectURL(await response.blob());
    img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
  }
  return img;
}

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

function buttons(hooks, subject) {
  return hooks.map(({ label, onClick }) => {
    const button = text("button", label, "hook");
    button.type = "button";
    button.addEventListener("click", () => onClick(subject));
    return button;
  });
}

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function topAttributes(attributes, count) {
  return (attributes || [])
    .filter((a) => a.positive)
    .sort((a, b) => b.probability - a.probability)
    .slice(0, count)
    .map((a) => `${a.name} ${Math.round(a.probability * 100)}%`);
}

// Stored tracks and the search -----------------------------------------------------------------------------------

async function card(track) {
  const element = document.createElement("article");
  element.className = "card track";
  element.dataset.id = track.id;
  element.append(track.thumbnail ? await image(track.thumbnail, `track ${track.id}`) : text("div", "no thumbnail", "noimage"));
  const meta = text("div", `${track.camera} · ${when(track.first_seen)}`, "meta");
  if (track.score !== undefined) meta.prepend(text("span", track.score.toFixed(3), "score"));
  element.append(meta);
  const tags = document.createElement("div");
  topAttributes(track.attributes, 5).forEach((t) => tags.append(text("span", t, "tag")));
  element.append(tags, ...buttons(vtfpar.trackButtons, track));
  return element;
}

async function showTracks(params, append) {
  const query = new URLSearchParams({ limit: "24", ...params });
  if (append && state.cursor) query.set("cursor", state.cursor);
  const answer = await json(`/tracks?${query}`);
  const cards = await Promise.all(answer.tracks.map(card));
  const grid = $("tracks");
  if (!append) grid.replaceChildren();
  grid.append(...cards);
  if (!grid.children.length) grid.append(text("p", "No stored tracks match.", "muted"));
  state.cursor = answer.next_cursor;
  $("more").hidden = !answer.next_cursor;
  return answer;
}

function searchParams() {
  const params = {};
  const sentence = $("sentence").value.trim();
  const camera = $("camera").value.trim();
  const required = Object.keys(state.chips).filter((n) => state.chips[n] === "required");
  const excluded = Object.keys(state.chips).filter((n) => state.chips[n] === "excluded");
  if (sentence) params.q = sentence;
  if (camera) params.camera = camera;
  if (required.length) params.attributes = required.join(",");
  if (excluded.length) params.exclude = excluded.join(",");
  return params;
}

async function search(event) {
  if (event) event.preventDefault();
  $("search-error").textContent = "";
  state.query = searchParams();
  const asked = Object.keys(state.query).length > 0;
  try {
    const answer = await showTracks(state.query, false);
    // Set once the results are shown, so that the title always describes the cards below it.
    $("tracks-title").textContent = asked ? "Search results (best first)" : "Most recent tracks";
    const reading = answer.interpretation;
    $("interpretation").textContent = !asked
      ? ""
      : `required: ${answer.required.join(", ") || "—"}; excluded: ${answer.excluded.join(", ") || "—"}` +
        (reading && reading.unused.length ? `; not understood: ${reading.unused.join(", ")}` : "") +
        (reading && reading.free_text ? `; free text: ${reading.free_text}` : "") +
        (reading && reading.note ? ` (${reading.note})` : "");
  } catch (error) {
    $("search-error").textContent = error.message;
  }
}

async function chips() {
  const info = await json("/info");
  $("model").textContent = `${info.model.name}:${info.model.version} (${info.model.schema})`;
  const box = $("chips");
  info.attributes.forEach((attribute) => {
    const chip = text("button", attribute.name, "chip");
    chip.type = "button";
    chip.title = attribute.phrase;
    chip.addEventListener("click", () => {
      const next = { undefined: "required", required: "excluded", excluded: undefined }[state.chips[attribute.name]];
      if (next) state.chips[attribute.name] = next;
      else delete state.chips[attribute.name];
      chip.className = `chip ${next || ""}`;
      search();
    });
    box.append(chip);
  });
}

// Cameras ----------------------------------------------------------------------------------------------------------

const STATS = [
  ["state", "state", (s) => s.state],
  ["frames", "frames/s in · processed", (s) => `${s.fps_in.toFixed(1)} · ${s.fps_processed.toFixed(1)}`],
  ["dropped", "dropped", (s) => s.frames_dropped],
  ["lag", "lag", (s) => `${s.lag_s.toFixed(2)} s`],
  ["tracks", "people now", (s) => s.active_tracks],
  ["reconnects", "reconnects", (s) => s.reconnects],
];

// One camera's card. Its connections: the events (held while the card lives, aborted when it goes) and, in turn
// with the other cameras, one snapshot request at a time; nothing is left open once the card is removed.
class Camera {
  constructor(status) {
    this.id = status.id;
    this.path = `/streams/${encodeURIComponent(status.id)}`;
    this.people = new Map();
    this.aborter = new AbortController();
    this.element = document.createElement("article");
    this.element.className = "card stream";
    this.element.dataset.id = status.id;
    this.picture = document.createElement("img");
    this.picture.alt = `${status.name}: waiting for the first picture`;
    const remove = text("button", "Remove", "remove");
    remove.type = "button";
    remove.addEventListener("click", () => this.remove());
    this.stats = document.createElement("dl");
    this.error = text("div", "", "error");
    this.list = document.createElement("ul");
    this.list.className = "people";
    const title = text("div", status.name, "meta name");
    title.append(remove, ...buttons(vtfpar.cameraButtons, status));
    this.element.append(this.picture, title, this.stats, this.error, text("div", "People now", "subtitle"), this.list);
    this.update(status);
    this.follow();
  }

  update(status) {
    this.stats.replaceChildren(
      ...STATS.flatMap(([key, label, value]) => {
        const dd = text("dd", String(value(status)), key);
        return [text("dt", label), dd];
      }),
    );
    this.error.textContent = status.last_error || "";
  }

  async refreshPicture() {
    try {
      const response = await api(`${this.path}/snapshot`, { signal: this.aborter.signal });
      if (response.status !== 200) return;
      const url = URL.createObjectURL(await response.blob());
      const old = this.picture.src;
      this.picture.src = url;
      this.picture.alt = `${this.element.querySelector(".name").firstChild.textContent}: live picture`;
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    } catch (error) {
      if (error.name !== "AbortError" && !(error instanceof NoToken)) throw error;
    }
  }

  // The events, read incrementally from fetch (an EventSource cannot send the token's header).
  async follow() {
    while (!this.aborter.signal.aborted) {
      try {
        const response = await api(`${this.path}/events`, { signal: this.aborter.signal });
        if (response.ok) await this.read(response.body.getReader());
      } catch (error) {
        if (error.name === "AbortError" || error instanceof NoToken) return;
      }
      await new Promise((resolve) => setTimeout(resolve, EVENTS_RETRY_MS));
    }
  }

  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.event(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  event(block) {
    const fields = Object.fromEntries(
      block.split("\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
    );
    if (!fields.event || !fields.data) return;
    const track = JSON.parse(fields.data);
    if (fields.event === "track_end") this.people.delete(track.track_id);
    else this.people.set(track.track_id, track);
    this.list.replaceChildren(
      ...[...this.people.values()].map((p) => {
        const attributes = topAttributes(p.attributes, 3).join(", ") || "no attributes yet";
        const item = text("li", `#${p.track_id}: ${attributes}`);
        item.dataset.track = p.track_id;
        return item;
      }),
    );
  }

  async remove() {
    try {
      const response = await api(this.path, { method: "DELETE" });
      if (!response.ok && response.status !== 404) throw new Error((await response.json()).error.message);
      cameras.delete(this.id);
      this.close();
      showCameras();
    } catch (error) {
      this.error.textContent = error.message;
    }
  }

  close() {
    this.aborter.abort();
    if (this.picture.src.startsWith("blob:")) URL.revokeObjectURL(this.picture.src);
    this.element.remove();
  }
}

const cameras = new Map();

function showCameras() {
  const box = $("streams");
  const cards = [...cameras.values()].map((c) => c.element);
  if (cards.length) box.replaceChildren(...cards);
  else box.replaceChildren(text("p", EMPTY, "muted"));
}

async function pollCameras() {
  state.polling = true;
  try {
    const response = await api("/streams");
    if (response.ok) {
      const list = (await response.json()).streams;
      const seen = new Set(list.map((s) => s.id));
      for (const [id, camera] of cameras) if (!seen.has(id)) (cameras.delete(id), camera.close());
      list.forEach((s) => (cameras.has(s.id) ? cameras.get(s.id).update(s) : cameras.set(s.id, new Camera(s))));
    }
    showCameras();
  } catch (error) {
    if (error instanceof NoToken) {
      // Asked again only from the "API token" button, not every few seconds.
      $("streams").replaceChildren(text("p", "The cameras need the API token.", "muted"));
      state.polling = false;
      return;
    }
    $("streams").replaceChildren(text("p", "Streams unavailable.", "muted"));
  }
  setTimeout(pollCameras, STATUS_EVERY_MS); // after the answer: polls never overlap
}

async function pictures() {
  for (;;) {
    for (const camera of [...cameras.values()]) await camera.refreshPicture().catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, PICTURE_EVERY_MS));
  }
}

$("camera-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("camera-error").textContent = "";
  const body = JSON.stringify({ name: $("camera-name").value.trim(), url: $("camera-url").value.trim() });
  try {
    const status = await json("/streams", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    if (!cameras.has(status.id)) cameras.set(status.id, new Camera(status));
    showCameras();
    $("camera-form").reset();
  } catch (error) {
    $("camera-error").textContent = error.message; // the API's own words, e.g. the allow-list's refusal
  }
});

$("search-form").addEventListener("submit", search);
$("clear-button").addEventListener("click", () => {
  $("sentence").value = "";
  $("camera").value = "";
  state.chips = {};
  document.querySelectorAll(".chip").forEach((chip) => (chip.className = "chip"));
  search();
});
$("more").addEventListener("click", () => showTracks(state.query || {}, true).catch(() => {}));

function refresh() {
  search();
  if (!state.polling) pollCameras();
}

const vtfpar = { api, json, text, image, trackButtons: [], cameraButtons: [] };
window.vtfpar = vtfpar;
// Other console files load after this one and register their buttons before the first cards are drawn.
window.addEventListener("DOMContentLoaded", () => {
  chips().catch((error) => ($("search-error").textContent = error.message));
  search();
  pollCameras();
  pictures();
});
