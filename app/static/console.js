// The console: streams with a live preview, the most recent stored tracks, and the search. Plain JavaScript
// against the service's own API; the API token (when the service has one) is asked for on the first 401 and kept
// for this browser tab only (sessionStorage).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("vtfpar-token"), chips: {}, cursor: null, query: null, waiting: [] };

async function api(path) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    await askToken();
    return api(path);
  }
  return response;
}

function askToken() {
  // Several requests may meet a 401 at once: one dialog, and all of them retry once a token is given.
  return new Promise((resolve) => {
    state.waiting.push(resolve);
    const dialog = $("token-dialog");
    if (!dialog.open) dialog.showModal();
  });
}

$("token-form").addEventListener("submit", (event) => {
  if (event.submitter && event.submitter.value !== "save") return;
  state.token = $("token-input").value.trim();
  sessionStorage.setItem("vtfpar-token", state.token);
  const waiting = state.waiting.splice(0);
  waiting.forEach((resolve) => resolve());
});
$("token-button").addEventListener("click", () => $("token-dialog").showModal());

async function json(path) {
  const response = await api(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : response.statusText);
  return body;
}

// Images behind the token cannot be plain <img src>: fetched with the header, shown from a blob.
async function image(url, alt) {
  const img = document.createElement("img");
  img.alt = alt;
  const response = await api(url);
  if (response.ok) img.src = URL.createObjectURL(await response.blob());
  return img;
}

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

async function card(track) {
  const element = document.createElement("article");
  element.className = "card track";
  element.dataset.id = track.id;
  element.append(track.thumbnail ? await image(track.thumbnail, `track ${track.id}`) : text("div", "no thumbnail", "noimage"));
  const meta = text("div", `${track.camera} · ${when(track.first_seen)}`, "meta");
  if (track.score !== undefined) meta.prepend(text("span", track.score.toFixed(3), "score"));
  element.append(meta);
  const top = track.attributes.filter((a) => a.positive).sort((a, b) => b.probability - a.probability).slice(0, 5);
  const tags = document.createElement("div");
  top.forEach((a) => tags.append(text("span", `${a.name} ${Math.round(a.probability * 100)}%`, "tag")));
  element.append(tags);
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
        (reading && reading.unused.length ? `; not understood: ${reading.unused.join(", ")}` : "");
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
    });
    box.append(chip);
  });
}

async function streams() {
  const box = $("streams");
  let response;
  try {
    response = await api("/streams");
  } catch (error) {
    box.replaceChildren(text("p", "Streams unavailable.", "muted"));
    return;
  }
  if (response.status === 404) {
    box.replaceChildren(text("p", "No streams on this service.", "muted"));
    return;
  }
  const body = await response.json();
  const list = Array.isArray(body) ? body : body.streams || [];
  if (!list.length) {
    box.replaceChildren(text("p", "No streams.", "muted"));
    return;
  }
  const cards = await Promise.all(
    list.map(async (stream) => {
      const element = document.createElement("article");
      element.className = "card stream";
      element.append(await image(`/streams/${encodeURIComponent(stream.id)}/preview?t=${Date.now()}`, stream.name || stream.id));
      element.append(text("div", stream.name || stream.id, "meta"));
      element.append(text("div", stream.state || "", "state"));
      return element;
    }),
  );
  box.replaceChildren(...cards);
}

$("search-form").addEventListener("submit", search);
$("clear-button").addEventListener("click", () => {
  $("sentence").value = "";
  $("camera").value = "";
  state.chips = {};
  document.querySelectorAll(".chip").forEach((chip) => (chip.className = "chip"));
  search();
});
$("more").addEventListener("click", () => showTracks(state.query || {}, true));

chips().catch((error) => ($("search-error").textContent = error.message));
search();
streams();
setInterval(streams, 3000);
