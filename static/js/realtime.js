// The one socket of this page (docs/protocol.md, version 1).
//
// - Reconnects by itself with exponential backoff and jitter; shows its state.
// - Resumes every subscribed thread from the highest seq it has.
// - Messages typed while offline wait in an outbox and are sent (again) with the
//   same client_id until acknowledged: nothing typed is lost, nothing doubles.
// - When the session is gone (the socket is closed with 4401, or an API call
//   answers 401), the page goes to /session-expired/?next=<this page>, which
//   offers to sign in again and come back here.

const PROTOCOL = 1;
const CLOSE_SIGNED_OUT = 4401; // docs/protocol.md: "go to sign-in; do not reconnect"
export const SESSION_EXPIRED_PATH = "/session-expired/";
const ACTIVE_EVERY_MS = 60000;

let leavingForSignIn = false;

// Nothing this page does can succeed without a session, and staying would let a
// person keep typing into a page that can no longer save: say so on a page of its
// own, and come back here after signing in. Once per page, however many calls fail.
export function sessionExpired() {
  if (leavingForSignIn || location.pathname === SESSION_EXPIRED_PATH) return;
  leavingForSignIn = true;
  const next = `${location.pathname}${location.search}`;
  location.assign(`${SESSION_EXPIRED_PATH}?next=${encodeURIComponent(next)}`);
}

// 401: the API's answer to a request without a session (token authentication
// comes first, so a missing credential is a 401). A 403 is a refusal to a
// signed-in person and stays on the page, unless the body says "not signed in".
function sessionGone(response, data) {
  if (new URL(response.url || location.href, location.href).origin !== location.origin) return false;
  return response.status === 401 || (response.status === 403 && data && data.code === "not_authenticated");
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export class Realtime extends EventTarget {
  constructor({ url = null, statusElement = null } = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.url = url || `${scheme}://${location.host}/ws/`;
    this.statusElement = statusElement;
    this.threads = new Map(); // thread id -> {lastSeq, onMessage}
    this.topics = new Set();
    this.outbox = new Map(); // client_id -> send frame, until acked
    this.attempt = 0;
    this.state = "connecting";
    this.closedForGood = false;
    this.connect();
    window.addEventListener("online", () => this.retryNow());
    // The session's idle limit counts what the person does, not what the server
    // pushes (docs/protocol.md, "Session limits"): typing, clicking, scrolling or
    // touching this page tells the server, at most once a minute.
    for (const kind of ["keydown", "pointerdown", "wheel", "touchstart"]) {
      window.addEventListener(kind, () => this.active(), { passive: true, capture: true });
    }
  }

  active() {
    const now = Date.now();
    if (this.lastActive && now - this.lastActive < ACTIVE_EVERY_MS) return;
    if (this.raw({ type: "active" })) this.lastActive = now;
  }

  setState(state) {
    this.state = state;
    if (this.statusElement) {
      this.statusElement.dataset.state = state;
      this.statusElement.textContent = this.statusElement.dataset[`label${state[0].toUpperCase()}${state.slice(1)}`] || state;
    }
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  connect() {
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onmessage = (event) => this.onFrame(JSON.parse(event.data));
    ws.onclose = (event) => this.onClose(event);
  }

  onClose(event) {
    if (event.code === CLOSE_SIGNED_OUT) {
      this.closedForGood = true;
      this.setState("signedOut");
      // A page that must stay (for example to finish something locally) may
      // cancel the event; otherwise it goes to the expired-session page.
      const signedOut = new CustomEvent("signedout", { cancelable: true });
      if (this.dispatchEvent(signedOut)) sessionExpired();
      return;
    }
    this.setState("offline");
    const delay = Math.min(30000, 500 * 2 ** this.attempt) * (0.5 + Math.random());
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  retryNow() {
    if (this.closedForGood || (this.ws && this.ws.readyState <= 1)) return;
    clearTimeout(this.timer);
    this.connect();
  }

  raw(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  onFrame(frame) {
    switch (frame.type) {
      case "welcome":
        if (frame.protocol !== PROTOCOL) {
          this.closedForGood = true;
          this.ws.close();
          return;
        }
        this.attempt = 0;
        this.setState("online");
        this.user = frame.user;
        for (const [thread, entry] of this.threads) {
          this.raw({ type: "subscribe", thread, after: entry.lastSeq });
        }
        for (const topic of this.topics) this.raw({ type: "watch", topic });
        for (const frame of this.outbox.values()) this.raw(frame);
        break;
      case "message": {
        const entry = this.threads.get(frame.thread);
        if (!entry || (entry.lastSeq !== null && frame.seq <= entry.lastSeq)) return;
        entry.lastSeq = frame.seq;
        entry.onMessage(frame);
        break;
      }
      case "ack":
        this.outbox.delete(frame.client_id);
        break;
      case "resync_required": {
        const entry = this.threads.get(frame.thread);
        if (entry) this.resync(frame.thread, entry);
        break;
      }
      case "error":
        if (frame.code === "unavailable") setTimeout(() => this.flushOutbox(), 2000);
        break;
      default:
        break;
    }
    this.dispatchEvent(new CustomEvent(frame.type, { detail: frame }));
  }

  async resync(thread, entry) {
    // Too far behind for a replay: read the newest page over REST, then resubscribe.
    const response = await fetch(`/api/v1/threads/${thread}/messages/?limit=50`, {
      credentials: "same-origin",
    });
    if (!response.ok) return;
    const page = await response.json();
    for (const message of page.results) {
      if (entry.lastSeq === null || message.seq > entry.lastSeq) {
        entry.lastSeq = message.seq;
        entry.onMessage(message);
      }
    }
    this.raw({ type: "subscribe", thread, after: entry.lastSeq });
  }

  subscribe(thread, onMessage, after = 0) {
    this.threads.set(thread, { lastSeq: after, onMessage });
    this.raw({ type: "subscribe", thread, after });
  }

  watch(topic) {
    this.topics.add(topic);
    this.raw({ type: "watch", topic });
  }

  // `clientId`: resend a message kept across a page reload under its original id, so
  // the server answers with the stored one instead of storing it twice. `ref` is the
  // client id, so an `error` answering this send can be matched to its message.
  send(thread, body, attachments = [], clientId = null) {
    const client_id = clientId || uuid();
    const frame = { type: "send", thread, client_id, body, attachments, ref: client_id };
    this.outbox.set(frame.client_id, frame);
    this.raw(frame);
    return frame.client_id;
  }

  // Stop retrying a send the server refused for good (invalid, too large, closed thread).
  forget(clientId) {
    this.outbox.delete(clientId);
  }

  flushOutbox() {
    for (const frame of this.outbox.values()) this.raw(frame);
  }

  read(thread, seq) {
    this.raw({ type: "read", thread, seq });
  }

  typing(thread) {
    const now = Date.now();
    if (this.lastTyping && now - this.lastTyping < 2500) return;
    this.lastTyping = now;
    this.raw({ type: "typing", thread });
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function api(path, { method = "GET", body = undefined, form = undefined } = {}) {
  const headers = { "X-CSRFToken": csrfToken(), Accept: "application/json" };
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (sessionGone(response, data)) sessionExpired();
  if (!response.ok) {
    const error = new Error(data.detail || response.statusText);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}
