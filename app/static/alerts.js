// The console's alerts: the newest alerts with their thumbnails, rules and deliveries, and an operator's
// acknowledgement. Loaded after console.js, whose helpers (api, image, text, when, state, askToken) it uses.
// Polled every few seconds: a browser's EventSource cannot send the API token's header.
"use strict";

async function acknowledge(id) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  const response = await fetch(`/alerts/${id}/ack`, { method: "POST", headers });
  if (response.status === 401) {
    await askToken();
    return acknowledge(id);
  }
  await alerts();
}

function deliveries(alert) {
  return alert.deliveries.map((d) => `${d.channel} ${d.state}${d.last_error ? ` (${d.last_error})` : ""}`).join(", ");
}

async function alertCard(alert) {
  const element = document.createElement("article");
  element.className = alert.acknowledged_at ? "card alert acknowledged" : "card alert";
  element.dataset.id = alert.id;
  element.append(alert.thumbnail ? await image(alert.thumbnail, `alert ${alert.id}`) : text("div", "no thumbnail", "noimage"));
  element.append(text("div", `${alert.rule.name} · ${alert.camera} · ${when(alert.fired_at)}`, "meta"));
  element.append(text("div", deliveries(alert) || "events only", "state"));
  if (alert.acknowledged_at) {
    element.append(text("div", `acknowledged ${when(alert.acknowledged_at)}`, "muted"));
  } else {
    const button = text("button", "Acknowledge");
    button.type = "button";
    button.addEventListener("click", () => acknowledge(alert.id));
    element.append(button);
  }
  return element;
}

async function alerts() {
  const box = $("alerts");
  const response = await api("/alerts?limit=12");
  if (!response.ok) {
    box.replaceChildren(text("p", "Alerts unavailable.", "muted"));
    return;
  }
  const body = await response.json();
  if (!body.alerts.length) {
    box.replaceChildren(text("p", "No alerts. Rules are made with POST /rules (docs/alerts.md).", "muted"));
    return;
  }
  box.replaceChildren(...(await Promise.all(body.alerts.map(alertCard))));
}

alerts();
setInterval(alerts, 3000);
