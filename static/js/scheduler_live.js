// "My referrals" and the doctor's day: live refresh and the clinician's actions.

import { $, api, ask, failed, notice, onEvents, refreshEvery, refreshNow, refreshSoon, socket, t } from "./scheduler_common.js";

onEvents(["referral.", "appointment."], () => refreshSoon());
refreshEvery(60);

// The doctor's day: watch today's video visits, so a patient checking in to a
// waiting room shows up here (to open the visit and admit them) without a reload.
const day = $("doctor-day");
if (day && day.dataset.visits) {
  const realtime = socket();
  const topics = new Set(day.dataset.visits.split(",").filter(Boolean).map((id) => `visit.${id}`));
  for (const topic of topics) realtime.watch(topic);
  realtime.addEventListener("event", (event) => {
    if (topics.has(event.detail.topic)) refreshSoon(300);
  });
}

// A referral just sent waits for the router (a worker, usually within a second or two)
// and the router tells only the boards and, for emergencies, the patient: read the
// page again every few seconds until nothing on it is waiting to be routed.
let routingChecks = 0;
function followRouting() {
  if (routingChecks >= 30 || !document.querySelector('#live [data-routing="pending"]')) return;
  routingChecks += 1;
  refreshSoon(2000);
}
document.addEventListener("live-refreshed", followRouting);
followRouting();

// Said to screen readers (and seen) first: where the referral just sent went.
const sent = $("sent");
if (sent) {
  sent.focus();
  sent.scrollIntoView({ block: "start" });
}

// The data each action posts; null when the clinician cancelled the dialog.
const referralActions = {
  receive: async () => ({}),
  accept: async () => ({}),
  advise: async (row) => {
    const advice = await ask({
      title: t.adviceTitle,
      label: t.adviceLabel,
      submit: t.adviceSubmit,
      description: patientLine(row),
      multiline: true,
      maxLength: 8000,
    });
    return advice === null ? null : { advice };
  },
  reject: async (row) => {
    const reason = await ask({
      title: t.rejectTitle,
      label: t.rejectLabel,
      submit: t.rejectSubmit,
      description: patientLine(row),
      maxLength: 255,
    });
    return reason === null ? null : { reason };
  },
  complete: async (row) => {
    const care_plan = await ask({
      title: t.carePlanTitle,
      label: t.carePlanLabel,
      submit: t.carePlanSubmit,
      description: patientLine(row),
      multiline: true,
      maxLength: 20000,
    });
    return care_plan === null ? null : { care_plan };
  },
};

function patientLine(row) {
  return row.dataset.patient ? `${t.patient}: ${row.dataset.patient}` : "";
}

const appointmentActions = ["arrive", "fulfil", "no-show"];

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  const referral = button.closest("[data-referral]");
  const appointment = button.closest("[data-appointment]");
  try {
    if (referral && referralActions[action]) {
      const body = await referralActions[action](referral);
      if (body === null) return;
      button.disabled = true;
      await api(`/api/v1/referrals/${referral.dataset.referral}/${action}/`, { method: "POST", body });
    } else if (appointment && appointmentActions.includes(action)) {
      button.disabled = true;
      await api(`/api/v1/appointments/${appointment.dataset.appointment}/${action}/`, { method: "POST", body: {} });
    } else {
      return;
    }
    notice(t.done);
    await refreshNow();
  } catch (error) {
    button.disabled = false;
    failed(error);
  }
});
