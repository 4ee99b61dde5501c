// "Find similar" on every stored track's card, and its answer (GET /tracks/{id}/similar) as a timeline across
// cameras: one row per camera, in the order the person reached them, each row's sightings in time order. Uses
// console.js's helpers (json, card, text); its only hook is its <script> tag after console.js: the buttons are
// added as console.js puts cards into #tracks.
"use strict";

const similar = (() => {
  const section = document.createElement("section");
  section.id = "similar-section";
  section.hidden = true;
  const title = text("h2", "Similar tracks");
  const note = text("p", "", "muted");
  note.id = "similar-note";
  const error = text("p", "", "error");
  const timeline = document.createElement("div");
  timeline.id = "similar-timeline";
  section.append(title, note, error, timeline);
  $("tracks-section").before(section);
  return { section, title, note, error, timeline };
})();

function byFirstSeen(a, b) {
  return new Date(a.first_seen) - new Date(b.first_seen);
}

async function cameraRow(camera, tracks) {
  const row = document.createElement("div");
  row.className = "timeline-row";
  row.dataset.camera = camera;
  row.style.cssText = "display: flex; gap: 0.5rem; align-items: flex-start; overflow-x: auto; margin: 0.5rem 0";
  row.append(text("h3", camera), ...(await Promise.all(tracks.map(card))));
  return row;
}

async function findSimilar(id) {
  similar.section.hidden = false;
  similar.title.textContent = `Tracks similar to track ${id}, across cameras`;
  similar.error.textContent = "";
  try {
    const answer = await json(`/tracks/${id}/similar?limit=24`);
    const cameras = new Map();
    for (const track of [...answer.tracks].sort(byFirstSeen)) {
      if (!cameras.has(track.camera)) cameras.set(track.camera, []);
      cameras.get(track.camera).push(track);
    }
    const rows = await Promise.all([...cameras].map(([camera, tracks]) => cameraRow(camera, tracks)));
    similar.timeline.replaceChildren(...rows);
    if (!rows.length) similar.timeline.append(text("p", "No similar tracks stored.", "muted"));
    similar.note.textContent =
      answer.pretrained_tower === false
        ? "The served model's CLIP tower is not a pretrained one (the demo's is random): this ranking tests the " +
          "plumbing and says little about appearance."
        : "";
  } catch (failure) {
    similar.timeline.replaceChildren();
    similar.error.textContent = failure.message;
  }
  similar.section.scrollIntoView();
}

function addFindSimilar(element) {
  if (element.nodeType !== 1 || !element.classList.contains("track") || element.querySelector(".find-similar")) return;
  const button = text("button", "find similar", "find-similar");
  button.type = "button";
  button.addEventListener("click", () => findSimilar(element.dataset.id));
  element.append(button);
}

new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach(addFindSimilar))).observe(
  $("tracks"),
  { childList: true },
);
document.querySelectorAll("#tracks .track").forEach(addFindSimilar);
