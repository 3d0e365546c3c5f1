// The privacy officer's review list: a new emergency access at my facility arrives
// live as a `break_glass.opened` event on my own topic. The page says so and offers
// a reload, rather than reloading under a note being typed.

import { Realtime } from "./realtime.js";

const t = JSON.parse(document.getElementById("review-strings").textContent);
const notice = document.getElementById("review-notice");
const realtime = new Realtime();

realtime.addEventListener("event", (event) => {
  const frame = event.detail;
  if (frame.topic !== "user" || frame.name !== "break_glass.opened") return;
  notice.replaceChildren(document.createTextNode(`${t.opened} `));
  const reload = document.createElement("a");
  reload.href = location.href;
  reload.textContent = t.reload;
  notice.append(reload);
  notice.dataset.kind = "warning";
  notice.hidden = false;
});
