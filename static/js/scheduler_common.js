// Shared by the scheduler's pages: the page's one socket, a notice line, strings,
// and refreshing the page's live part from the server (one renderer: the template).

import { Realtime, api } from "./realtime.js";

export { api };

export const t = JSON.parse(document.getElementById("scheduler-strings").textContent);
export const $ = (id) => document.getElementById(id);

export const realtime = new Realtime({ statusElement: $("connection") });

export function notice(text, kind = "info") {
  const box = $("notice");
  if (!box) return;
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => (box.hidden = true), 8000);
}

export function failed(error) {
  const fields = error.data && error.data.fields ? Object.values(error.data.fields).flat().join(" ") : "";
  notice(`${(error.data && error.data.detail) || t.error} ${fields}`.trim(), "error");
}

// Re-read the page and swap its #live part; several events close together make one read.
let pending = null;
export function refreshSoon(delay = 400) {
  clearTimeout(pending);
  pending = setTimeout(refreshNow, delay);
}

export async function refreshNow() {
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("live");
  const live = $("live");
  if (fresh && live) {
    const open = [...live.querySelectorAll("details[open]")].map((d) => d.closest("[data-referral]")?.dataset.referral);
    live.replaceWith(fresh);
    for (const id of open) {
      const details = fresh.querySelector(`[data-referral="${id}"] details`);
      if (details) details.open = true;
    }
    document.dispatchEvent(new CustomEvent("live-refreshed"));
  }
}

// Queue positions move when others are seen; events do not cover every move.
export function refreshEvery(seconds) {
  setInterval(() => {
    if (document.visibilityState === "visible") refreshSoon(0);
  }, seconds * 1000);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refreshSoon(0);
  });
}

export function onEvents(prefixes, handler) {
  realtime.addEventListener("event", (event) => {
    const { name, data } = event.detail;
    if (prefixes.some((p) => name.startsWith(p))) handler(name, data || {});
  });
}
