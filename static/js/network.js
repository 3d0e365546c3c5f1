// "My network": mentors and mentees by level, quota gauges, requests to answer,
// suggestions, the neighbourhood graph, the mentorship conversations and case
// conferences. Everything is read from /api/v1/network/…; live changes arrive
// as `event` frames on the page's one socket, presence through the mentorship
// threads (subscribing to a thread brings its participants' presence).

import { Realtime, api } from "./realtime.js";
import { drawGraph } from "./network_graph.js";

const root = document.getElementById("network");
const me = Number(root.dataset.user);
const t = JSON.parse(document.getElementById("network-strings").textContent);
const $ = (id) => document.getElementById(id);

const state = {
  overview: null,
  presence: new Map(), // user id -> online | away | offline
  threads: new Set(), // subscribed mentorship threads
  unread: new Map(), // thread -> messages not yet read here
  chatThread: null,
  chatLoading: false,
  chatBuffer: [], // messages that arrived while the history was loading
  suggestionRole: null,
};

const realtime = new Realtime({ statusElement: $("connection") });

function notice(text, kind = "info") {
  const box = $("notice");
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => (box.hidden = true), 8000);
}

function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function run(action, button) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    notice(error.message || t.error, "error");
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

function presenceDot(userId) {
  const status = state.presence.get(userId) || "offline";
  return h("span", { class: `presence presence-${status}`, "data-presence": userId, title: t[status] },
    h("span", { class: "visually-hidden" }, t[status]));
}

function person(p) {
  return h("span", { class: "person" },
    presenceDot(p.id), " ",
    h("strong", {}, p.name), p.title ? ` ${p.title}` : "",
    h("span", { class: "muted" }, ` · ${p.facility.name} (${t.levels[p.level] || p.level}, ${p.facility.province})`));
}

// --- Overview ------------------------------------------------------------------------

async function load() {
  const overview = await run(() => api("/api/v1/network/me/"));
  $("loading").hidden = true;
  if (!overview) return;
  state.overview = overview;
  renderGauges(overview);
  renderPending(overview);
  renderLinks(overview);
  renderConferenceForm(overview);
  watchThreads(overview);
  if (state.suggestionRole === null) {
    state.suggestionRole = overview.can_be_mentored ? "mentor" : "mentee";
    $("suggestion-roles").hidden = !(overview.can_mentor && overview.can_be_mentored);
  }
  loadSuggestions();
  loadGraph();
  loadConferences();
}

function renderGauges(overview) {
  $("gauges-card").hidden = !overview.can_mentor;
  $("policy-name").textContent = overview.policy;
  $("gauges").replaceChildren(
    ...overview.gauges.map((g) =>
      h("div", { class: `gauge${g.over ? " gauge-over" : ""}` },
        h("label", { for: `gauge-${g.mentee_level}` }, t.levels[g.mentee_level]),
        h("meter", { id: `gauge-${g.mentee_level}`, min: 0, max: Math.max(g.quota, g.accepted, 1), value: g.accepted, low: Math.max(g.quota - 0.5, 0), high: g.quota + 0.5, optimum: g.quota }),
        h("span", {}, ` ${g.accepted} ${t.of} ${g.quota}`),
        g.requested ? h("span", { class: "muted" }, ` · ${g.requested} ${t.pending}`) : null,
        g.over ? h("span", { class: "badge badge-warn" }, ` ${t.over}`) : null,
      ),
    ),
  );
}

function renderPending(overview) {
  const waiting = overview.mentorships.filter((m) => m.state === "requested");
  const list = $("pending");
  if (!waiting.length) {
    list.replaceChildren(h("li", { class: "muted empty" }, t.noPending));
    return;
  }
  list.replaceChildren(
    ...waiting.map((m) => {
      const other = m.my_role === "mentor" ? m.mentee : m.mentor;
      const role = m.my_role === "mentor" ? t.mentee : t.mentor;
      const mine = m.awaiting === me;
      return h("li", { "data-mentorship": m.id },
        person(other), h("span", { class: "badge" }, role),
        h("span", { class: "muted" }, mine ? t.waitingForYou : t.waitingForThem),
        m.message ? h("q", {}, m.message) : null,
        mine
          ? [
              h("button", { type: "button", class: "small primary", onclick: (e) => answer(m.id, "accept", e.target) }, t.accept),
              h("button", { type: "button", class: "small", onclick: (e) => answer(m.id, "decline", e.target) }, t.decline),
            ]
          : h("button", { type: "button", class: "small", onclick: (e) => end(m.id, "withdrawn", e.target) }, t.withdraw),
      );
    }),
  );
}

function byLevel(items, key) {
  const groups = new Map();
  for (const item of items) {
    const level = item[key].level;
    if (!groups.has(level)) groups.set(level, []);
    groups.get(level).push(item);
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]);
}

function renderLinks(overview) {
  const accepted = overview.mentorships.filter((m) => m.state === "accepted");
  const mentors = accepted.filter((m) => m.my_role === "mentee");
  const mentees = accepted.filter((m) => m.my_role === "mentor");
  const section = (items, key, empty) => {
    if (!items.length) return [h("p", { class: "muted empty" }, empty)];
    return byLevel(items, key).map(([level, group]) =>
      h("div", { class: "level-group" },
        h("h3", {}, `${t.levels[level]} (${group.length})`),
        h("ul", { class: "list" },
          ...group.map((m) =>
            h("li", { "data-mentorship": m.id },
              person(m[key]),
              h("span", { class: "unread badge", id: `unread-${m.thread}`, hidden: !state.unread.get(m.thread) },
                state.unread.get(m.thread) || ""),
              m.thread ? h("button", { type: "button", class: "small", onclick: () => openChat(m.thread, m[key].name) }, t.chat) : null,
              h("button", { type: "button", class: "small danger", onclick: (e) => end(m.id, null, e.target) }, t.end),
            ),
          ),
        ),
      ),
    );
  };
  $("mentors-card").hidden = !overview.can_be_mentored && !mentors.length;
  $("mentees-card").hidden = !overview.can_mentor && !mentees.length;
  $("mentors").replaceChildren(...section(mentors, "mentor", t.noMentors));
  $("mentees").replaceChildren(...section(mentees, "mentee", t.noMentees));
}

async function answer(id, what, button) {
  const body = what === "decline" ? { note: "" } : undefined;
  const done = await run(() => api(`/api/v1/network/mentorships/${id}/${what}/`, { method: "POST", body }), button);
  if (done) load();
}

async function end(id, reason, button) {
  if (!reason) {
    askEndReason(id, button);
    return;
  }
  const done = await run(
    () => api(`/api/v1/network/mentorships/${id}/end/`, { method: "POST", body: { reason } }),
    button,
  );
  if (done) load();
}

function askEndReason(id, button) {
  // An inline form in place of the button: why it ends, then confirm or cancel.
  const item = button.closest("li");
  if (item.querySelector(".end-form")) return;
  const select = h("select", { "aria-label": t.endReason },
    ...Object.entries(t.endReasons)
      .filter(([key]) => !["withdrawn", "expired"].includes(key))
      .map(([key, label]) => h("option", { value: key }, label)),
  );
  const form = h("form", { class: "end-form" },
    h("label", {}, t.endReason, " ", select),
    h("button", { type: "submit", class: "small danger" }, t.end),
    h("button", { type: "button", class: "small", onclick: () => form.remove() }, t.cancel),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    end(id, select.value, event.submitter);
  });
  item.append(form);
  select.focus();
}

// --- Presence and conversations ---------------------------------------------------------

function watchThreads(overview) {
  for (const m of overview.mentorships) {
    if (m.state === "accepted" && m.thread && !state.threads.has(m.thread)) {
      state.threads.add(m.thread);
      // after = null: only new messages; the `subscribed` answer carries presence.
      realtime.subscribe(m.thread, (message) => onThreadMessage(m.thread, message), null);
    }
  }
}

function setPresence(userId, status) {
  state.presence.set(userId, status);
  for (const dot of document.querySelectorAll(`[data-presence="${userId}"]`)) {
    dot.className = `presence presence-${status}`;
    dot.title = t[status];
    dot.firstChild.textContent = t[status];
  }
}

realtime.addEventListener("subscribed", (event) => {
  for (const participant of event.detail.participants || []) {
    if (participant.id !== me) setPresence(participant.id, participant.presence);
  }
  if (state.threads.has(event.detail.thread) && state.chatThread !== event.detail.thread) {
    setUnread(event.detail.thread, event.detail.unread || 0);
  }
});

function setUnread(thread, count) {
  state.unread.set(thread, count);
  const badge = $(`unread-${thread}`);
  if (badge) {
    badge.textContent = count || "";
    badge.hidden = !count;
  }
}
realtime.addEventListener("presence", (event) => setPresence(event.detail.user, event.detail.status));

function renderMessage(message) {
  const item = h("li", { class: message.kind === "system" ? "system" : message.sender.id === me ? "mine" : "" },
    message.kind === "system" ? null : h("strong", {}, `${message.sender.name}: `),
    message.body,
    ...(message.attachments || []).map((a) => [" ", h("a", { href: a.url, target: "_blank", rel: "noopener" }, `📎 ${a.name}`)]),
  );
  $("messages").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function onThreadMessage(thread, message) {
  if (state.chatThread === thread) {
    if (state.chatLoading) {
      state.chatBuffer.push(message); // shown after the history, which may not have it
      return;
    }
    $("messages").querySelector(".empty")?.remove();
    renderMessage(message);
    realtime.read(thread, message.seq);
  } else if (message.sender.id !== me) {
    setUnread(thread, (state.unread.get(thread) || 0) + 1);
  }
}

async function openChat(thread, title) {
  state.chatThread = thread;
  state.chatLoading = true;
  state.chatBuffer = [];
  $("chat").hidden = false;
  $("chat-title").textContent = `${t.chat}: ${title}`;
  $("messages").replaceChildren(h("li", { class: "muted" }, t.loading));
  const page = await run(() => api(`/api/v1/threads/${thread}/messages/?limit=50`));
  state.chatLoading = false;
  if (state.chatThread !== thread) return; // another conversation was opened meanwhile
  $("messages").replaceChildren();
  const history = page ? page.results : [];
  const seen = new Set(history.map((m) => m.seq));
  const messages = [...history, ...state.chatBuffer.filter((m) => !seen.has(m.seq))];
  if (!messages.length) $("messages").append(h("li", { class: "muted empty" }, t.noMessages));
  messages.forEach(renderMessage);
  const last = messages.at(-1);
  if (last) realtime.read(thread, last.seq);
  setUnread(thread, 0);
  if (!state.threads.has(thread)) {
    state.threads.add(thread);
    realtime.subscribe(thread, (message) => onThreadMessage(thread, message), last ? last.seq : null);
  }
  $("chat").scrollIntoView({ behavior: "smooth", block: "start" });
  $("chat-input").focus();
}

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const body = input.value.trim();
  if (!body || !state.chatThread) return;
  realtime.send(state.chatThread, body); // kept in the outbox until acknowledged
  input.value = "";
});
$("chat-input").addEventListener("input", () => state.chatThread && realtime.typing(state.chatThread));
$("chat-close").addEventListener("click", () => {
  state.chatThread = null;
  $("chat").hidden = true;
});

// --- Suggestions -----------------------------------------------------------------------------

async function loadSuggestions() {
  const list = $("suggestions");
  $("suggestions-loading").hidden = false;
  const result = await run(() => api(`/api/v1/network/suggestions/?role=${state.suggestionRole}&limit=8`));
  $("suggestions-loading").hidden = true;
  if (!result) return;
  if (!result.results.length) {
    list.replaceChildren(h("li", { class: "muted empty" }, result.detail || t.noSuggestions));
    return;
  }
  list.replaceChildren(
    ...result.results.map((s) =>
      h("li", {},
        h("span", { class: "person" }, h("strong", {}, s.name), s.title ? ` ${s.title}` : "",
          h("span", { class: "muted" }, ` · ${s.facility_name} (${t.levels[s.level]}, ${s.province})`)),
        h("span", { class: "reason" }, s.reason),
        h("button", {
          type: "button",
          class: "small primary",
          onclick: (e) => ask(s, result.role, e.target),
        }, t.ask),
      ),
    ),
  );
}

async function ask(suggestion, role, button) {
  const body = { [role]: suggestion.id, source: "suggestion" };
  const done = await run(() => api("/api/v1/network/mentorships/", { method: "POST", body }), button);
  if (done) {
    button.textContent = t.asked;
    button.disabled = true;
    load();
  }
}

for (const button of document.querySelectorAll("#suggestion-roles button")) {
  button.addEventListener("click", () => {
    state.suggestionRole = button.dataset.role;
    for (const other of document.querySelectorAll("#suggestion-roles button")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    loadSuggestions();
  });
}

// --- Graph ------------------------------------------------------------------------------------

async function loadGraph() {
  const graph = await run(() => api("/api/v1/network/graph/"));
  if (graph) drawGraph($("graph"), graph, { me, labels: { levels: t.levels, pending: t.pending } });
}

// --- Case conferences ---------------------------------------------------------------------------

async function loadConferences() {
  const conferences = await run(() => api("/api/v1/network/case-conferences/"));
  if (!conferences) return;
  const list = $("conferences");
  if (!conferences.length) {
    list.replaceChildren(h("li", { class: "muted empty" }, t.noConferences));
    return;
  }
  list.replaceChildren(
    ...conferences.map((c) => {
      const mine = c.organiser_id === me && c.state === "open";
      return h("li", {},
        h("strong", {}, c.subject),
        h("span", { class: "badge" }, c.state === "open" ? t.open : t.concluded),
        h("span", { class: "muted" }, c.organiser),
        h("button", { type: "button", class: "small", onclick: () => openChat(c.thread, c.subject) }, t.chat),
        mine ? h("button", { type: "button", class: "small", onclick: (e) => conclude(c.id, e.target) }, t.conclude) : null,
        c.recommendations ? h("p", { class: "recommendations" }, h("strong", {}, `${t.recommendations}: `), c.recommendations) : null,
      );
    }),
  );
}

function renderConferenceForm(overview) {
  const mentees = overview.mentorships.filter((m) => m.state === "accepted" && m.my_role === "mentor");
  $("conference-form").hidden = !mentees.length;
  $("conference-mentees").replaceChildren(
    ...mentees.map((m) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", value: m.mentee.id }), ` ${m.mentee.name}`),
    ),
  );
}

function numbers(text) {
  return text.split(/[\s,;]+/).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

$("conference-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter;
  const body = {
    subject: $("conference-subject").value.trim(),
    mentee_ids: [...document.querySelectorAll("#conference-mentees input:checked")].map((i) => Number(i.value)),
    colleague_ids: numbers($("conference-colleagues").value),
  };
  const patient = numbers($("conference-patient").value)[0];
  if (patient) body.patient_id = patient;
  await run(async () => {
    const conference = await api("/api/v1/network/case-conferences/", { method: "POST", body });
    const ids = [];
    for (const file of $("conference-files").files) {
      const form = new FormData();
      form.append("file", file);
      const uploaded = await api(`/api/v1/threads/${conference.thread}/attachments/`, { method: "POST", form });
      ids.push(uploaded.id);
    }
    const text = $("conference-presentation").value.trim();
    if (text || ids.length) {
      await api(`/api/v1/network/case-conferences/${conference.id}/present/`, {
        method: "POST",
        body: { body: text, attachment_ids: ids },
      });
    }
    event.target.reset();
    await loadConferences();
    openChat(conference.thread, conference.subject);
  }, button);
});

function conclude(id, button) {
  const item = button.closest("li");
  if (item.querySelector(".conclude-form")) return;
  const text = h("textarea", { rows: 3, maxlength: 7000, required: true, "aria-label": t.recommendations });
  const form = h("form", { class: "conclude-form" },
    h("label", {}, t.recommendations), text,
    h("button", { type: "submit", class: "small primary" }, t.conclude),
    h("button", { type: "button", class: "small", onclick: () => form.remove() }, t.cancel),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { recommendations: text.value };
    const done = await run(
      () => api(`/api/v1/network/case-conferences/${id}/conclude/`, { method: "POST", body }),
      event.submitter,
    );
    if (done) loadConferences();
  });
  item.append(form);
  text.focus();
}

// --- Live notifications -------------------------------------------------------------------------

const NOTICES = {
  "mentorship.requested": "requested",
  "mentorship.accepted": "acceptedNotice",
  "mentorship.declined": "declinedNotice",
  "mentorship.ended": "endedNotice",
  "case_conference.invited": "invitedNotice",
};

realtime.addEventListener("event", (event) => {
  const { name, data } = event.detail;
  if (!NOTICES[name]) return;
  const other = data.mentor && data.mentor.id === me ? data.mentee : data.mentor;
  notice(other ? `${t[NOTICES[name]]}: ${other.name}` : t[NOTICES[name]]);
  if (name === "case_conference.invited") loadConferences();
  else load();
});

load();
