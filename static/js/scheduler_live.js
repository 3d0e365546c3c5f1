// "My referrals" and the doctor's day: live refresh and the clinician's actions.

import { api, failed, notice, onEvents, refreshEvery, refreshNow, refreshSoon, t } from "./scheduler_common.js";

onEvents(["referral.", "appointment."], () => refreshSoon());
refreshEvery(60);

const referralActions = {
  receive: () => ({}),
  accept: () => ({}),
  advise: () => {
    const advice = prompt(t.advicePrompt);
    return advice ? { advice } : null;
  },
  reject: () => {
    const reason = prompt(t.reasonPrompt);
    return reason ? { reason } : null;
  },
  complete: () => {
    const care_plan = prompt(t.reasonPrompt);
    return care_plan ? { care_plan } : null;
  },
};
const appointmentActions = ["arrive", "fulfil", "no-show"];

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  const referral = button.closest("[data-referral]");
  const appointment = button.closest("[data-appointment]");
  try {
    if (referral && referralActions[action]) {
      const body = referralActions[action]();
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
