// The coordinator board: live over the page's socket (watch board.province.<code> or
// board.facility.<code>), bulk accept and re-route with a reason (audited server-side).

import { $, api, failed, notice, refreshEvery, refreshNow, refreshSoon, socket, t } from "./scheduler_common.js";

const topic = $("board").dataset.topic;
const realtime = socket();
realtime.watch(topic);
realtime.addEventListener("event", (event) => {
  if (event.detail.topic === topic) refreshSoon(800);
});
refreshEvery(60); // deadlines pass without events

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-bulk]");
  if (!button) return;
  const ids = [...document.querySelectorAll('input[name="referral"]:checked')].map((box) => Number(box.value));
  const reason = $("bulk-reason").value.trim();
  if (!ids.length) return notice(t.chooseReferrals, "warning");
  if (!reason) return notice(t.chooseReason, "warning");
  button.disabled = true;
  try {
    await api(`/api/v1/board/${button.dataset.bulk}/`, { method: "POST", body: { referral_ids: ids, reason } });
    notice(t.done);
    await refreshNow();
  } catch (error) {
    failed(error);
  } finally {
    button.disabled = false;
  }
});
