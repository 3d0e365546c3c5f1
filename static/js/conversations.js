// "My conversations": the list of my threads, and one thread.
//
// The database is the store. History comes over REST a page at a time (each read is
// audited there); new messages come over the page's one socket (realtime.js), which
// resumes from the highest seq it has after a reconnect. Sending goes through
// realtime.js's outbox under a client id: a message shows as pending until the server
// acknowledges it, is retried with the same id (so it is stored once), and is kept in
// sessionStorage so a reload of the tab while offline does not lose it either.

import { Realtime, api } from "./realtime.js";

const t = JSON.parse(document.getElementById("conversation-strings").textContent);
const $ = (id) => document.getElementById(id);
const fill = (template, values) => template.replace(/%\((\w+)\)s/g, (_, key) => values[key] ?? "");

const MAX_FILE_BYTES = 10 * 1024 * 1024;
const FILE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic", "application/pdf"];
const MAX_FILES = 10;
const PAGE = 50;

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) element.append(child);
  }
  return element;
}

// Shown in Vietnam's time whatever the device's clock says: visits and messages are
// arranged in Vietnamese time, and a doctor abroad should read the same times.
const lang = document.documentElement.lang || "vi";
const dayFormat = new Intl.DateTimeFormat(lang, { day: "2-digit", month: "2-digit", year: "numeric", timeZone: "Asia/Ho_Chi_Minh" });
const timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", timeZone: "Asia/Ho_Chi_Minh" });

function when(iso) {
  const date = new Date(iso);
  const today = dayFormat.format(new Date()) === dayFormat.format(date);
  return today ? timeFormat.format(date) : `${timeFormat.format(date)} ${dayFormat.format(date)}`;
}

function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function setPresence(userId, status) {
  for (const dot of document.querySelectorAll(`[data-presence="${userId}"]`)) {
    dot.className = `presence presence-${status}`;
    dot.title = t[status] || status;
    const label = dot.querySelector(".visually-hidden");
    if (label) label.textContent = t[status] || status;
  }
}

const realtime = new Realtime({ statusElement: $("connection") });
realtime.addEventListener("presence", (event) => setPresence(event.detail.user, event.detail.status));
realtime.addEventListener("subscribed", (event) => {
  for (const person of event.detail.participants || []) setPresence(person.id, person.presence);
});
// While the socket is down, presence dots are last known, not current: the page dims them.
realtime.addEventListener("state", () => {
  for (const root of document.querySelectorAll(".consult")) root.dataset.connection = realtime.state;
});
// Others see me as away while this tab is in the background.
document.addEventListener("visibilitychange", () => {
  realtime.raw({ type: "presence", status: document.hidden ? "away" : "online" });
});

// --- The list of my conversations ------------------------------------------------------------

function listPage(root) {
  const me = Number(root.dataset.user);
  const rows = new Map(); // thread id -> {element, lastSeq, unread}

  function setUnread(row, count) {
    row.unread = Math.max(0, count);
    const badge = row.element.querySelector(".unread-count");
    badge.querySelector(".count").textContent = row.unread;
    badge.hidden = !row.unread;
    row.element.classList.toggle("has-unread", row.unread > 0);
  }

  function onMessage(thread, message) {
    const row = rows.get(thread);
    row.lastSeq = Math.max(row.lastSeq, message.seq);
    const time = h("time", { class: "thread-time muted", datetime: message.created_at }, when(message.created_at));
    row.element.querySelector(".thread-time").replaceWith(time);
    // The server moves my read mark to my own message, so a message of mine (from
    // another device) means nothing here is unread any more.
    setUnread(row, message.sender.id === me ? 0 : row.unread + 1);
    $("thread-list").prepend(row.element);
  }

  for (const element of root.querySelectorAll(".thread-row")) {
    const thread = Number(element.dataset.thread);
    const lastSeq = Number(element.dataset.lastSeq);
    const count = Number(element.querySelector(".unread-count .count").textContent) || 0;
    rows.set(thread, { element, lastSeq, unread: count });
    // From the seq the page was rendered with: what arrives while offline is replayed.
    realtime.subscribe(thread, (message) => onMessage(thread, message), lastSeq);
  }

  realtime.addEventListener("subscribed", (event) => {
    const row = rows.get(event.detail.thread);
    if (!row) return;
    row.lastSeq = Math.max(row.lastSeq, event.detail.last_seq);
    setUnread(row, event.detail.unread);
  });
  realtime.addEventListener("read", (event) => {
    const row = rows.get(event.detail.thread);
    if (row && event.detail.user === me) setUnread(row, row.lastSeq - event.detail.seq);
  });
  realtime.addEventListener("removed", (event) => {
    rows.get(event.detail.thread)?.element.remove();
    rows.delete(event.detail.thread);
  });
}

// --- One conversation ----------------------------------------------------------------------------

function threadPage(root) {
  const threadId = Number(root.dataset.thread);
  const me = Number(root.dataset.user);
  const closed = root.dataset.closed === "1";
  const list = $("messages");
  const scroller = $("scroller");
  const input = $("compose-input");
  const storeKey = `telehealth.pending.${threadId}`;
  const draftKey = `telehealth.draft.${threadId}`;

  const state = {
    bySeq: new Map(), // seq -> <li>
    mine: new Map(), // client id -> <li> of a message of mine (pending or sent)
    pending: new Map(), // client id -> {client_id, body, attachments, at}: not yet acknowledged
    oldestSeq: null,
    newestSeq: 0,
    hasMore: false,
    ready: false,
    loadingOlder: false,
    readSent: 0,
    pinned: true,
    readers: new Map(), // other participant -> their read mark
    typers: new Map(), // other participant -> {name, timer}
    files: [], // {id?, name, element, uploading, attachment}
  };

  function notice(text, kind = "info") {
    const box = $("notice");
    box.textContent = text;
    box.dataset.kind = kind;
    box.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => (box.hidden = true), 8000);
  }

  // sessionStorage, not localStorage: pending texts can be health data, and a clinic
  // desktop is shared; they survive a reload of this tab and go when it is closed.
  function savePending() {
    try {
      sessionStorage.setItem(storeKey, JSON.stringify([...state.pending.values()]));
    } catch {
      // Storage full or disabled: the in-memory outbox still holds the messages.
    }
  }

  function storedPending() {
    try {
      return JSON.parse(sessionStorage.getItem(storeKey) || "[]");
    } catch {
      return [];
    }
  }

  // --- Rendering ----------------------------------------------------------------------------

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  function scrollToBottom() {
    state.pinned = true;
    scroller.scrollTop = scroller.scrollHeight;
    $("jump-new")?.remove();
  }

  // A reader at the bottom stays there while the list grows (an image loading, a status
  // line appearing); a reader scrolled up to older messages is left where they are.
  scroller.addEventListener("scroll", () => {
    state.pinned = nearBottom();
    if (state.pinned) $("jump-new")?.remove();
  });
  new ResizeObserver(() => {
    if (state.pinned) scroller.scrollTop = scroller.scrollHeight;
  }).observe(list);

  function attachmentItem(attachment) {
    const isImage = attachment.content_type.startsWith("image/") && attachment.content_type !== "image/heic";
    if (isImage) {
      const image = h("img", { src: attachment.url, alt: attachment.name, loading: "lazy" });
      return h("li", { class: "att att-image" }, h("a", { href: attachment.url, target: "_blank", rel: "noopener" }, image));
    }
    return h(
      "li",
      { class: "att att-file" },
      h(
        "a",
        { href: attachment.url, download: attachment.name },
        h("span", { class: "file-kind", "aria-hidden": "true" }, (attachment.name.split(".").pop() || "").toUpperCase()),
        attachment.name,
      ),
      h("span", { class: "muted" }, ` (${fileSize(attachment.size)})`),
    );
  }

  function messageItem(message, { pending = false } = {}) {
    const own = message.sender.id === me;
    const system = message.kind === "system";
    const item = h("li", {
      class: `msg ${system ? "system" : own ? "mine" : "theirs"}${pending ? " pending" : ""}`,
      tabindex: "-1",
      "data-client-id": own ? message.client_id : null,
    });
    if (!pending) item.dataset.seq = message.seq;
    if (!system) {
      item.append(
        h(
          "p",
          { class: "msg-meta" },
          h("strong", {}, own ? t.you : message.sender.name),
          " ",
          message.created_at ? h("time", { datetime: message.created_at }, when(message.created_at)) : null,
        ),
      );
    }
    if (message.body) item.append(h("p", { class: "msg-body" }, message.body));
    if (message.attachments?.length) {
      item.append(h("ul", { class: "attachments" }, message.attachments.map((a) => attachmentItem(a))));
    }
    if (own && !system) item.append(h("p", { class: "msg-status", "aria-live": "polite" }, pending ? pendingLabel() : t.sent));
    return item;
  }

  function pendingLabel() {
    return realtime.state === "online" ? t.pending : t.pendingOffline;
  }

  // Stored messages in seq order; pending ones (no seq yet) stay after all of them.
  function place(item, seq) {
    const next = [...list.children].find((el) => el.dataset.seq === undefined || Number(el.dataset.seq) > seq);
    list.insertBefore(item, next || null);
  }

  function insertMessage(message) {
    const known = state.bySeq.get(message.seq);
    if (known && !known.classList.contains("provisional")) return null;
    known?.remove(); // an acknowledged copy of my own message, shown until the message came
    $("no-messages")?.remove();
    const item = messageItem(message);
    if (message.sender.id === me && message.client_id) {
      state.mine.get(message.client_id)?.remove(); // the pending copy becomes the stored one
      state.mine.set(message.client_id, item);
      if (state.pending.delete(message.client_id)) savePending();
    }
    place(item, message.seq);
    state.bySeq.set(message.seq, item);
    state.newestSeq = Math.max(state.newestSeq, message.seq);
    state.oldestSeq = state.oldestSeq === null ? message.seq : Math.min(state.oldestSeq, message.seq);
    const typer = state.typers.get(message.sender.id);
    if (typer) {
      clearTimeout(typer.timer);
      state.typers.delete(message.sender.id);
      showTyping();
    }
    return item;
  }

  function showReceipts() {
    const seenUpTo = Math.max(0, ...state.readers.values());
    let latest = null;
    for (const item of list.querySelectorAll(".msg.mine[data-seq]")) {
      const status = item.querySelector(".msg-status");
      if (!status) continue;
      status.textContent = Number(item.dataset.seq) <= seenUpTo ? t.seen : t.sent;
      item.classList.remove("latest");
      latest = item;
    }
    latest?.classList.add("latest");
  }

  function showEmpty() {
    if (!list.children.length) list.append(h("li", { id: "no-messages", class: "muted empty" }, t.noMessages));
  }

  function showOlderControls() {
    $("load-older").hidden = !state.hasMore;
    $("history-start").hidden = state.hasMore || !state.bySeq.size;
  }

  // --- History over REST ---------------------------------------------------------------------

  async function loadNewest() {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await api(`/api/v1/threads/${threadId}/messages/?limit=${PAGE}`);
      } catch (error) {
        if (error.status === 404) {
          notice(t.removed, "error");
          return null;
        }
        // Offline at load: keep trying, like the socket does.
        $("history-loading").textContent = t.loading;
        await new Promise((resolve) => setTimeout(resolve, Math.min(30000, 1000 * 2 ** attempt)));
      }
    }
  }

  async function start() {
    const page = await loadNewest();
    $("history-loading").hidden = true;
    if (!page) return;
    for (const message of page.results) insertMessage(message);
    state.hasMore = page.has_more;
    state.ready = true;
    restorePending();
    showEmpty();
    showOlderControls();
    showReceipts();
    scrollToBottom();
    // Announce new messages to screen readers from now on, not the history just loaded.
    list.setAttribute("aria-live", "polite");
    // Live from the newest seq we have: what was committed meanwhile is replayed first.
    realtime.subscribe(threadId, onLive, state.newestSeq);
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) loadOlder();
    }, { root: scroller }).observe($("load-older"));
  }

  async function loadOlder() {
    if (state.loadingOlder || !state.hasMore || state.oldestSeq === null) return;
    state.loadingOlder = true;
    const button = $("load-older");
    button.disabled = true;
    button.textContent = t.loading;
    try {
      const page = await api(`/api/v1/threads/${threadId}/messages/?before=${state.oldestSeq}&limit=${PAGE}`);
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      state.pinned = false;
      list.setAttribute("aria-live", "off"); // older pages are not news
      for (const message of page.results) insertMessage(message);
      scroller.scrollTop = scroller.scrollHeight - fromBottom; // keep what the reader was looking at
      state.hasMore = page.has_more;
      showReceipts();
    } catch (error) {
      notice(error.message || t.error, "error");
    } finally {
      state.loadingOlder = false;
      list.setAttribute("aria-live", "polite");
      button.disabled = false;
      button.textContent = t.loadOlder;
      showOlderControls();
    }
  }

  // --- Live ------------------------------------------------------------------------------------

  function onLive(message) {
    const stick = state.pinned || message.sender.id === me;
    const item = insertMessage(message);
    if (!item) return;
    showReceipts();
    if (stick) scrollToBottom();
    else if (!$("jump-new")) {
      scroller.after(h("button", { id: "jump-new", type: "button", class: "small jump-new", onclick: scrollToBottom }, `↓ ${t.newMessage}`));
    }
    markRead();
  }

  function markRead() {
    if (document.hidden || state.newestSeq <= state.readSent) return;
    state.readSent = state.newestSeq;
    realtime.read(threadId, state.newestSeq);
  }
  document.addEventListener("visibilitychange", markRead);

  realtime.addEventListener("subscribed", (event) => {
    if (event.detail.thread !== threadId) return;
    for (const person of event.detail.participants) {
      if (person.id !== me) state.readers.set(person.id, person.read_seq);
    }
    showReceipts();
    // A read mark sent while the socket was down is sent again.
    if (event.detail.read_seq < state.readSent) state.readSent = event.detail.read_seq;
    markRead();
  });
  realtime.addEventListener("read", (event) => {
    if (event.detail.thread !== threadId || event.detail.user === me) return;
    state.readers.set(event.detail.user, Math.max(state.readers.get(event.detail.user) || 0, event.detail.seq));
    showReceipts();
  });
  realtime.addEventListener("resync_required", async (event) => {
    // Too far behind to replay: start again from the newest page, so the list has no hole.
    if (event.detail.thread !== threadId) return;
    for (const item of state.bySeq.values()) item.remove();
    state.bySeq.clear();
    state.oldestSeq = null;
    const page = await loadNewest();
    if (!page) return;
    for (const message of page.results) insertMessage(message);
    state.hasMore = page.has_more;
    showOlderControls();
    showReceipts();
    scrollToBottom();
  });
  realtime.addEventListener("removed", (event) => {
    if (event.detail.thread !== threadId) return;
    notice(t.removed, "error");
    $("compose")?.remove();
  });

  // --- Typing ----------------------------------------------------------------------------------

  function showTyping() {
    const names = [...state.typers.values()].map((typer) => typer.name);
    $("typing").textContent = !names.length
      ? ""
      : names.length === 1
        ? fill(t.typingOne, { name: names[0] })
        : fill(t.typingMany, { names: names.join(", ") });
  }
  realtime.addEventListener("typing", (event) => {
    const { thread, user, expires_in: expires } = event.detail;
    if (thread !== threadId || user.id === me) return;
    clearTimeout(state.typers.get(user.id)?.timer);
    const timer = setTimeout(() => {
      state.typers.delete(user.id);
      showTyping();
    }, (expires || 6) * 1000);
    state.typers.set(user.id, { name: user.name, timer });
    showTyping();
  });

  // --- Sending ---------------------------------------------------------------------------------

  function showPending(entry) {
    const item = messageItem(
      { client_id: entry.client_id, sender: { id: me }, kind: "text", body: entry.body, attachments: entry.attachments },
      { pending: true },
    );
    $("no-messages")?.remove();
    state.mine.set(entry.client_id, item);
    list.append(item);
    return item;
  }

  function send(body, attachments, clientId = null) {
    const id = realtime.send(threadId, body, attachments.map((a) => a.id), clientId);
    const entry = { client_id: id, body, attachments, at: Date.now() };
    state.pending.set(id, entry);
    savePending();
    showPending(entry);
    scrollToBottom();
  }

  function restorePending() {
    for (const entry of storedPending()) {
      if (state.mine.has(entry.client_id)) continue; // stored before the reload: in the history
      send(entry.body, entry.attachments || [], entry.client_id);
    }
    savePending();
  }

  realtime.addEventListener("ack", (event) => {
    const { client_id: clientId, seq } = event.detail;
    const item = state.mine.get(clientId);
    if (state.pending.delete(clientId)) savePending();
    if (!item || item.dataset.seq) return;
    // Stored. The message frame normally follows and replaces this copy; until then it
    // shows as sent, in its place.
    item.classList.replace("pending", "provisional");
    item.dataset.seq = seq;
    item.remove();
    place(item, seq);
    state.bySeq.set(seq, item);
    state.newestSeq = Math.max(state.newestSeq, seq);
    showReceipts();
  });

  realtime.addEventListener("error", (event) => {
    const { ref, code, detail } = event.detail;
    const entry = ref && state.pending.get(ref);
    // Errors of other frames (a read mark, a typing signal) are best effort: not shown.
    if (!entry) return;
    if (code === "rate_limited") {
      setTimeout(() => realtime.flushOutbox(), 1500);
      return;
    }
    if (code === "unavailable") return; // realtime.js retries it
    // Refused for good (too long, closed conversation…): stop retrying, keep the text.
    realtime.forget(ref);
    state.pending.delete(ref);
    savePending();
    const item = state.mine.get(ref);
    if (!item) return;
    item.classList.replace("pending", "failed");
    const status = item.querySelector(".msg-status");
    status.replaceChildren(
      `${t.failed}: ${detail || t.error} `,
      h("button", {
        type: "button",
        class: "small",
        onclick: () => {
          item.remove();
          state.mine.delete(ref);
          if (input) {
            input.value = input.value ? `${input.value}\n${entry.body}` : entry.body;
            input.dispatchEvent(new Event("input"));
            input.focus();
          }
          for (const attachment of entry.attachments) addReadyFile(attachment);
        },
      }, t.edit),
    );
  });

  realtime.addEventListener("state", () => {
    for (const item of list.querySelectorAll(".msg.pending .msg-status")) item.textContent = pendingLabel();
  });

  // A socket can look open while the network under it is gone (a phone changing
  // networks): if a message waits for its ack too long, ask the server for a pong,
  // and reconnect when none comes.
  let pingSent = 0;
  realtime.addEventListener("pong", () => (pingSent = 0));
  setInterval(() => {
    if (realtime.state !== "online") return;
    if (pingSent && Date.now() - pingSent > 5000) {
      pingSent = 0;
      realtime.ws?.close();
      return;
    }
    const stale = [...state.pending.values()].some((entry) => Date.now() - entry.at > 8000);
    if (stale && !pingSent) {
      pingSent = Date.now();
      realtime.raw({ type: "ping", ref: "watchdog" });
    }
  }, 2000);

  // --- Composing -------------------------------------------------------------------------------

  function uploading() {
    return state.files.some((file) => file.uploading);
  }

  function updateSend() {
    if ($("send")) $("send").disabled = uploading();
  }

  function fileChip(name) {
    return h("li", { class: "file-chip" }, h("span", { class: "file-name" }, name), h("span", { class: "file-state muted" }));
  }

  function addReadyFile(attachment) {
    const file = { name: attachment.name, attachment, uploading: false, element: fileChip(attachment.name) };
    file.element.append(removeFileButton(file));
    state.files.push(file);
    $("attachments-ready")?.append(file.element);
  }

  function removeFileButton(file) {
    return h(
      "button",
      {
        type: "button",
        class: "small link-like",
        "aria-label": fill(t.removeFile, { name: file.name }),
        onclick: () => {
          file.element.remove();
          state.files = state.files.filter((other) => other !== file);
          updateSend();
        },
      },
      "✕",
    );
  }

  async function upload(raw) {
    const file = { name: raw.name, uploading: true, attachment: null, element: fileChip(raw.name) };
    const status = file.element.querySelector(".file-state");
    $("attachments-ready").append(file.element);
    if (!FILE_TYPES.includes(raw.type) && !/\.heic$/i.test(raw.name)) {
      file.uploading = false;
      status.textContent = ` ${t.fileType}`;
      file.element.classList.add("error");
      file.element.append(removeFileButton(file));
      return;
    }
    if (raw.size > MAX_FILE_BYTES) {
      file.uploading = false;
      status.textContent = ` ${t.fileTooLarge}`;
      file.element.classList.add("error");
      file.element.append(removeFileButton(file));
      return;
    }
    state.files.push(file);
    status.textContent = ` ${t.uploading}`;
    updateSend();
    const form = new FormData();
    form.append("file", raw, raw.name);
    try {
      file.attachment = await api(`/api/v1/threads/${threadId}/attachments/`, { method: "POST", form });
      status.textContent = ` (${fileSize(file.attachment.size)})`;
    } catch (error) {
      state.files = state.files.filter((other) => other !== file);
      status.textContent = ` ${error.status ? error.message : t.uploadFailed}`;
      file.element.classList.add("error");
    } finally {
      file.uploading = false;
      file.element.append(removeFileButton(file));
      updateSend();
    }
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }

  if (input && !closed) {
    input.value = sessionStorage.getItem(draftKey) || "";
    autosize();
    input.addEventListener("input", () => {
      autosize();
      try {
        sessionStorage.setItem(draftKey, input.value);
      } catch {
        // Not kept across a reload then; nothing else depends on it.
      }
      if (input.value.trim() && state.ready) realtime.typing(threadId);
    });
    input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter is a new line; never while an input method composes
      // (Vietnamese Telex/VNI typing goes through composition).
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("compose").requestSubmit();
      }
    });
    $("file-input").addEventListener("change", (event) => {
      const chosen = [...event.target.files];
      event.target.value = "";
      const room = MAX_FILES - state.files.length;
      for (const raw of chosen.slice(0, Math.max(0, room))) upload(raw);
    });
    $("compose").addEventListener("submit", (event) => {
      event.preventDefault();
      if (uploading() || !state.ready) return;
      const body = input.value.trim();
      const attachments = state.files.filter((file) => file.attachment).map((file) => file.attachment);
      if (!body && !attachments.length) return;
      send(body, attachments);
      input.value = "";
      sessionStorage.removeItem(draftKey);
      autosize();
      for (const file of state.files) file.element.remove();
      state.files = [];
      input.focus();
    });
  }

  // --- Search in this conversation --------------------------------------------------------------

  async function jumpTo(seq) {
    while (!state.bySeq.has(seq) && state.hasMore) {
      const before = state.oldestSeq;
      await loadOlder();
      if (state.oldestSeq === before) break;
    }
    const item = state.bySeq.get(seq);
    if (!item) return;
    item.scrollIntoView({ block: "center" });
    item.classList.add("highlight");
    item.focus({ preventScroll: true });
    setTimeout(() => item.classList.remove("highlight"), 2500);
  }

  $("search-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = $("search-input").value.trim();
    if (!query) return;
    $("search-results").hidden = false;
    $("search-summary").textContent = t.loading;
    $("search-list").replaceChildren();
    let found;
    try {
      found = await api(`/api/v1/threads/${threadId}/search/?q=${encodeURIComponent(query)}`);
    } catch (error) {
      $("search-summary").textContent = error.message || t.error;
      return;
    }
    $("search-summary").textContent = found.length ? fill(t.results, { n: found.length }) : t.noResults;
    $("search-list").replaceChildren(
      ...found.map((message) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "search-hit", onclick: () => jumpTo(message.seq) },
            h("span", { class: "muted" }, `${message.sender.id === me ? t.you : message.sender.name} · ${when(message.created_at)}`),
            h("span", { class: "hit-body" }, message.body.length > 200 ? `${message.body.slice(0, 200)}…` : message.body),
          ),
        ),
      ),
    );
  });
  $("search-close").addEventListener("click", () => {
    $("search-results").hidden = true;
    $("search-input").focus();
  });

  $("load-older").addEventListener("click", loadOlder);

  // For the browser tests: what is pending, and the socket to cut.
  window.telehealthConversation = {
    realtime,
    pending: () => [...state.pending.keys()],
  };

  start();
}

const listRoot = $("conversations");
const threadRoot = $("conversation");
if (listRoot) listPage(listRoot);
if (threadRoot) threadPage(threadRoot);
