// The profile page: saves what PATCH /api/v1/me/ allows and shows each refused
// field's message next to the field. Without this script the form posts to the
// page itself, which checks the same fields the same way.

import { api } from "./realtime.js";

const form = document.getElementById("profile-form");
const notice = document.getElementById("profile-notice");
const t = JSON.parse(document.getElementById("profile-strings").textContent);
const FIELDS = ["full_name", "phone", "preferred_language"];

function say(text, kind = "info") {
  notice.textContent = text;
  notice.dataset.kind = kind;
  notice.hidden = false;
}

function showErrors(fields) {
  let first = null;
  for (const [name, messages] of Object.entries(fields || {})) {
    const slot = form.querySelector(`[data-error-for="${name}"]`);
    const input = form.elements[name];
    if (!slot || !input) continue;
    slot.textContent = [].concat(messages).join(" ");
    slot.hidden = false;
    input.setAttribute("aria-invalid", "true");
    first = first || input;
  }
  return first;
}

function clearErrors() {
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  const body = {};
  for (const name of FIELDS) body[name] = form.elements[name].value;
  clearErrors();
  notice.hidden = true;
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    const me = await api("/api/v1/me/", { method: "PATCH", body });
    const who = document.querySelector(".topbar .who");
    if (who) who.textContent = me.full_name || me.username;
    say(t.saved);
  } catch (error) {
    // A 401 has already sent the page to the expired-session page (realtime.js).
    const first = error.status === 400 ? showErrors(error.data && error.data.fields) : null;
    if (first) {
      say(t.invalid, "error");
      first.focus();
    } else {
      say((error.data && error.data.detail) || t.error, "error");
    }
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
});
