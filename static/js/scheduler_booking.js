// The booking page: free times of a clinician, booking a video or in-person visit,
// cancelling, rescheduling, and the waiting list's offers.

import { $, api, failed, notice, onEvents, refreshNow, refreshSoon, t } from "./scheduler_common.js";

onEvents(["appointment.", "waitlist."], (name, data) => {
  if (name === "waitlist.offer") notice(`${t.offer} ${new Date(data.start).toLocaleString()}`);
  refreshSoon();
});

let rescheduling = null; // appointment id being moved

function slotButton(slot, clinician) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small slot";
  button.textContent = new Date(slot.start).toLocaleString([], {
    weekday: "short",
    day: "2-digit",
    month: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
  button.dataset.slot = slot.id;
  button.dataset.clinician = clinician;
  return button;
}

async function showSlots(button) {
  const clinician = button.dataset.clinician;
  const box = document.querySelector(`[data-slots-for="${clinician}"]`);
  const from = new Date(Date.now() + 10 * 60 * 1000).toISOString();
  const slots = await api(`/api/v1/slots/?clinician=${clinician}&from=${encodeURIComponent(from)}`);
  box.replaceChildren();
  if (!rescheduling) {
    const picker = $("mode-picker").content.cloneNode(true);
    if (button.dataset.video !== "1") picker.querySelector('[value="video"]').closest("label").remove();
    if (button.dataset.inPerson !== "1") picker.querySelector('[value="in_person"]').closest("label").remove();
    const first = picker.querySelector("input");
    if (first) first.checked = true;
    box.append(picker);
  }
  if (!slots.length) {
    const join = document.createElement("button");
    join.type = "button";
    join.className = "small";
    join.dataset.action = "waitlist";
    join.dataset.clinician = clinician;
    join.textContent = t.noSlots;
    box.append(join);
  }
  for (const slot of slots.slice(0, 40)) box.append(slotButton(slot, clinician));
  box.hidden = false;
}

async function book(button) {
  const box = button.closest(".slots");
  const mode = box.querySelector('input[name="mode"]:checked')?.value || "video";
  if (rescheduling) {
    await api(`/api/v1/appointments/${rescheduling}/reschedule/`, {
      method: "POST",
      body: { slot_id: Number(button.dataset.slot) },
    });
    rescheduling = null;
  } else {
    await api("/api/v1/appointments/", { method: "POST", body: { slot_id: Number(button.dataset.slot), mode } });
  }
  notice(t.booked);
  box.hidden = true;
  await refreshNow();
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const appointment = button.closest("[data-appointment]")?.dataset.appointment;
  const entry = button.closest("[data-entry]")?.dataset.entry;
  try {
    if (button.dataset.action === "slots") {
      rescheduling = null;
      await showSlots(button);
    } else if (button.dataset.slot) {
      button.disabled = true;
      await book(button);
    } else if (button.dataset.action === "cancel" && appointment) {
      if (!confirm(t.confirmCancel)) return;
      await api(`/api/v1/appointments/${appointment}/cancel/`, { method: "POST", body: {} });
      notice(t.cancelled);
      await refreshNow();
    } else if (button.dataset.action === "reschedule" && appointment) {
      rescheduling = appointment;
      const list = document.querySelector(`button[data-action="slots"][data-clinician="${button.dataset.clinician}"]`);
      if (list) {
        await showSlots(list);
        list.scrollIntoView({ block: "center" });
        notice(t.rescheduleTo);
      }
    } else if (button.dataset.action === "waitlist") {
      await api("/api/v1/waitlist/", {
        method: "POST",
        body: { clinician_id: Number(button.dataset.clinician), mode: "video" },
      });
      notice(t.joined);
      await refreshNow();
    } else if (entry && ["take", "decline", "leave"].includes(button.dataset.action)) {
      const action = { take: "accept", decline: "decline", leave: "cancel" }[button.dataset.action];
      await api(`/api/v1/waitlist/${entry}/${action}/`, { method: "POST", body: {} });
      notice(t.done);
      await refreshNow();
    }
  } catch (error) {
    button.disabled = false;
    failed(error);
  }
});
