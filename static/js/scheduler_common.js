// Shared by the scheduler's pages: the page's one socket, a notice line, strings,
// a small dialog form in place of prompt(), and refreshing the page's live part
// from the server (one renderer: the template).

import { Realtime, SESSION_EXPIRED_PATH, api, sessionExpired } from "./realtime.js";

export { api };

export const t = JSON.parse(document.getElementById("scheduler-strings").textContent);
export const $ = (id) => document.getElementById(id);

// Opened on first use, so a page with nothing live (the referral form) opens no socket.
let realtimeSocket = null;
export function socket() {
  if (!realtimeSocket) realtimeSocket = new Realtime({ statusElement: $("connection") });
  return realtimeSocket;
}

// "%(name)s" placeholders, as the strings come from gettext.
export function format(text, values) {
  return text.replace(/%\((\w+)\)s/g, (_, key) => (key in values ? String(values[key]) : ""));
}

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
  // Marked background: a page re-reading itself on a timer or an event is not the
  // person using the service, so it does not hold the session open (idle limit).
  const response = await fetch(location.href, {
    credentials: "same-origin",
    headers: { "X-Telehealth-Background": "1" },
  });
  if (response.redirected && new URL(response.url).pathname === SESSION_EXPIRED_PATH) {
    sessionExpired();
    return;
  }
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
  socket().addEventListener("event", (event) => {
    const { name, data } = event.detail;
    if (prefixes.some((p) => name.startsWith(p))) handler(name, data || {});
  });
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

let askCount = 0;

// Ask for one piece of text in a modal <dialog>, in place of window.prompt(): a
// real label, a hint (who the answer concerns), a required field whose error is
// read out with it, Cancel and a named submit button. Escape cancels. Focus goes
// to the field, and back to what had it when the dialog closes.
// Resolves to the trimmed text, or null when cancelled.
export function ask({ title, label, submit, description = "", multiline = false, maxLength = 255 }) {
  askCount += 1;
  const id = `ask-${askCount}`;
  const opener = document.activeElement;
  const field = multiline
    ? element("textarea", { id: `${id}-field`, rows: "6" })
    : element("input", { id: `${id}-field`, autocomplete: "off" });
  field.maxLength = maxLength;
  field.required = true;
  const error = element("p", { id: `${id}-error`, class: "field-error" });
  error.hidden = true;
  const describedBy = [`${id}-error`];
  const header = [element("h2", { id: `${id}-title` }, title)];
  if (description) {
    header.push(element("p", { id: `${id}-description`, class: "muted" }, description));
    describedBy.unshift(`${id}-description`);
  }
  field.setAttribute("aria-describedby", describedBy.join(" "));
  const cancel = element("button", { type: "button" }, t.cancel);
  const form = element(
    "form",
    { novalidate: "" },
    ...header,
    element("label", { for: field.id }, label),
    field,
    error,
    element("div", { class: "actions" }, cancel, element("button", { type: "submit", class: "primary" }, submit)),
  );
  const dialog = element("dialog", { class: "ask", "aria-labelledby": `${id}-title` }, form);
  if (description) dialog.setAttribute("aria-describedby", `${id}-description`);

  return new Promise((resolve) => {
    let answer = null;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = field.value.trim();
      if (!value) {
        error.textContent = t.required;
        error.hidden = false;
        field.setAttribute("aria-invalid", "true");
        field.focus();
        return;
      }
      answer = value;
      dialog.close();
    });
    field.addEventListener("input", () => {
      if (error.hidden || !field.value.trim()) return;
      error.hidden = true;
      field.removeAttribute("aria-invalid");
    });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    field.focus();
  });
}
