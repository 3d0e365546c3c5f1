// The waiting room and the call of one video visit.
//
// Media goes to the visit's relay node: we publish our tracks (WHIP style:
// POST an SDP offer, get an answer) and subscribe to each admitted participant
// (WHEP style). Each request carries a short-lived join token from the web tier.
// The relay speaks non-trickle ICE, so offers are sent once gathering is done.

import { Realtime, api } from "./realtime.js";

const root = document.getElementById("visit");
const visitId = Number(root.dataset.visit);
const me = Number(root.dataset.user);
const isHost = root.dataset.host === "1";
const threadId = Number(root.dataset.thread);
const t = JSON.parse(document.getElementById("visit-strings").textContent);
const $ = (id) => document.getElementById(id);

const state = {
  visit: null,
  stream: null,
  publisher: null, // {pc, location, join}
  subscriptions: new Map(), // participant ref -> {pc, tile, location}
  joined: false,
  audioOnly: false,
};

const realtime = new Realtime({ statusElement: $("connection") });
// Taking part in a call is using the service, hands on the keyboard or not: keep the
// session from going idle while joined (docs/protocol.md, "Session limits").
setInterval(() => {
  if (state.joined) realtime.active();
}, 60000);

function notice(text, kind = "info") {
  const box = $("notice");
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => (box.hidden = true), 8000);
}

// --- Chat: the visit's thread in the messaging engine ---------------------------

function renderMessage(message) {
  const item = document.createElement("li");
  item.className = message.kind === "system" ? "system" : message.sender.id === me ? "mine" : "";
  const who = document.createElement("strong");
  who.textContent = message.kind === "system" ? "" : `${message.sender.name}: `;
  item.append(who, document.createTextNode(message.body));
  $("messages").append(item);
  item.scrollIntoView({ block: "nearest" });
  realtime.read(threadId, message.seq);
}

realtime.subscribe(threadId, renderMessage, 0);

// The doctor's status in the waiting room, from the presence of the chat's participants.
const presence = new Map();
function showDoctorStatus() {
  if (isHost || !state.visit) return;
  const status = presence.get(state.visit.host.id) || "offline";
  const host = state.visit.participants.find((p) => p.user === state.visit.host.id);
  const inCall = host && host.state === "admitted" && state.visit.state === "in_progress";
  const text = { online: t.doctorOnline, away: t.doctorAway, offline: t.doctorOffline }[status];
  $("doctor-status").textContent = inCall && status !== "offline" ? t.doctorInCall : text;
  $("doctor-status").dataset.status = status;
}
realtime.addEventListener("subscribed", (event) => {
  if (event.detail.thread !== threadId) return;
  for (const person of event.detail.participants) presence.set(person.id, person.presence);
  showDoctorStatus();
});
realtime.addEventListener("presence", (event) => {
  presence.set(event.detail.user, event.detail.status);
  showDoctorStatus();
});
$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const body = input.value.trim();
  if (!body) return;
  realtime.send(threadId, body); // kept in the outbox until acknowledged
  input.value = "";
});
$("chat-input").addEventListener("input", () => realtime.typing(threadId));

// --- Live visit events -------------------------------------------------------------

realtime.watch(`visit.${visitId}`);
realtime.addEventListener("event", (event) => onVisitEvent(event.detail.name, event.detail.data));

async function onVisitEvent(name, data) {
  if (data && data.visit !== undefined && data.visit !== visitId) return;
  switch (name) {
    case "visit.waiting":
    case "visit.left":
    case "visit.invited":
      await refresh();
      break;
    case "visit.admitted":
      await refresh();
      if (data.user === me) notice(t.admitted);
      break;
    case "visit.published":
      if (state.joined && data.participant !== `u-${me}`) subscribe(data.participant, data.name);
      break;
    case "visit.removed":
      if (data.user === me) {
        await hangUp();
        notice(t.removed, "error");
        $("call").hidden = true;
      } else {
        dropSubscription(`u-${data.user}`);
        await refresh();
      }
      break;
    case "visit.audio_only": {
      const sub = state.subscriptions.get(`u-${data.user}`);
      if (sub) sub.tile.classList.toggle("audio-only", data.audio_only);
      break;
    }
    case "visit.snapshot_notice":
      break;
    case "visit.snapshot_notice_me":
      break;
    case "visit.state":
      await refresh();
      if (data.state === "ended") {
        await hangUp();
        notice(t.ended);
      }
      break;
    case "visit.rejoin":
      notice(t.rejoin);
      await rejoin();
      break;
    default:
      break;
  }
}

// Notifications on my own topic (the socket's "user" events).
realtime.addEventListener("event", (event) => {
  const { topic, name } = event.detail;
  if (topic !== "user") return;
  if (name === "visit.snapshot_notice") notice(t.snapshotNotice, "warning");
  if (name === "visit.snapshot_taken") notice(t.snapshotSaved);
});

// --- The visit's state decides what shows ----------------------------------------------

async function refresh() {
  state.visit = await api(`/api/v1/visits/${visitId}/`);
  const visit = state.visit;
  $("visit-state").textContent = visit.state_label;
  const mine = visit.participants.find((p) => p.user === me);
  const live = visit.state === "waiting" || visit.state === "in_progress";
  if (isHost) {
    $("host-panel").hidden = !["scheduled", "waiting", "in_progress"].includes(visit.state);
    $("open-room").hidden = visit.state !== "scheduled";
    renderWaitingList(visit);
  }
  showDoctorStatus();
  renderRecording(visit);
  const admitted = mine && mine.state === "admitted";
  $("waiting-room").hidden = isHost || admitted || !live;
  $("call").hidden = !(admitted && live);
  if (admitted && live && !state.joined) await join();
}

function renderWaitingList(visit) {
  const list = $("waiting-list");
  list.replaceChildren();
  const waiting = visit.participants.filter((p) => p.state === "waiting");
  if (!waiting.length) {
    const empty = document.createElement("li");
    empty.className = "muted empty";
    empty.textContent = t.nobody;
    list.append(empty);
  }
  for (const person of waiting) {
    const item = document.createElement("li");
    const checks = person.device_check || {};
    item.textContent = `${person.name} (${person.role_label}) `;
    const detail = document.createElement("span");
    detail.className = "muted";
    const rtt = checks.connection && checks.connection.rtt_ms;
    detail.textContent = `${t.camera} ${checks.camera ? "✓" : "✗"} · ${t.microphone} ${checks.microphone ? "✓" : "✗"}${rtt ? ` · ${rtt} ms` : ""}`;
    const admit = document.createElement("button");
    admit.type = "button";
    admit.className = "primary small";
    admit.textContent = t.admit;
    admit.dataset.admit = person.user;
    admit.addEventListener("click", async () => {
      admit.disabled = true;
      try {
        await api(`/api/v1/visits/${visitId}/admit/`, { method: "POST", body: { user_id: person.user } });
        await refresh();
      } catch (error) {
        notice(error.message || t.error, "error");
        admit.disabled = false;
      }
    });
    item.append(detail, " ", admit);
    list.append(item);
  }
}

// --- Waiting room: device check and check-in --------------------------------------

async function deviceCheck() {
  const result = { camera: false, microphone: false, connection: {} };
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    $("preview").srcObject = state.stream;
    result.camera = state.stream.getVideoTracks().length > 0;
    result.microphone = state.stream.getAudioTracks().length > 0;
    meterMicrophone(state.stream);
  } catch (error) {
    const reason = error.name === "NotAllowedError" ? t.blocked : t.missing;
    $("check-camera").querySelector("strong").textContent = reason;
    $("check-microphone").querySelector("strong").textContent = reason;
  }
  if (result.camera) $("check-camera").querySelector("strong").textContent = t.ok;
  if (result.microphone) $("check-microphone").querySelector("strong").textContent = t.ok;
  const times = [];
  for (let i = 0; i < 3; i += 1) {
    const started = performance.now();
    await fetch("/api/v1/health/", { cache: "no-store" }).catch(() => null);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  result.connection = { rtt_ms: Math.round(times[1]) };
  $("check-connection").querySelector("strong").textContent = `${result.connection.rtt_ms} ms`;
  return result;
}

function meterMicrophone(stream) {
  try {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    context.createMediaStreamSource(stream).connect(analyser);
    const data = new Uint8Array(analyser.fftSize);
    const tick = () => {
      analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const value of data) peak = Math.max(peak, Math.abs(value - 128) / 128);
      $("mic-level").value = peak;
      if (!$("waiting-room").hidden) requestAnimationFrame(tick);
    };
    tick();
  } catch {
    // A meter is a nicety; the check result above is what counts.
  }
}

$("check-in").addEventListener("click", async () => {
  $("check-in").disabled = true;
  const checks = await deviceCheck();
  try {
    await api(`/api/v1/visits/${visitId}/check-in/`, { method: "POST", body: checks });
    $("checked-in").hidden = false;
    $("check-in").hidden = true;
  } catch (error) {
    notice(error.message || t.error, "error");
    $("check-in").disabled = false;
  }
});

if (isHost) {
  $("open-room").addEventListener("click", async () => {
    await api(`/api/v1/visits/${visitId}/open/`, { method: "POST" });
    await refresh();
  });
}

// --- Media: publish and subscribe through the relay ----------------------------------

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

async function negotiate(pc, url, token) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gathered(pc);
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  if (!response.ok) {
    const error = new Error(`relay answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  const answer = await response.text();
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  return new URL(response.headers.get("Location") || "", url).toString();
}

async function freshJoin() {
  return api(`/api/v1/visits/${visitId}/join/`, { method: "POST" });
}

async function join() {
  state.joined = true;
  if (!state.stream) {
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    } catch {
      state.stream = new MediaStream();
    }
  }
  $("self-view").srcObject = state.stream;
  const joinInfo = await freshJoin();
  state.audioOnly = joinInfo.audio_only;
  const pc = new RTCPeerConnection({ iceServers: joinInfo.ice_servers });
  for (const track of state.stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [state.stream] });
  }
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed") rejoin();
  });
  const location = await negotiate(pc, `${joinInfo.relay}/rooms/${joinInfo.room}/publish`, joinInfo.token);
  state.publisher = { pc, location, join: joinInfo };
  if (state.audioOnly) await applyAudioOnly(true); // kept from before a reload or rejoin
  await api(`/api/v1/visits/${visitId}/published/`, { method: "POST" });
  for (const other of joinInfo.admitted) subscribe(other.participant, other.name);
}

async function subscribe(participant, name, attempt = 0) {
  if (state.subscriptions.has(participant)) return;
  const tile = document.createElement("figure");
  tile.className = "tile";
  tile.dataset.participant = participant;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  const caption = document.createElement("figcaption");
  caption.textContent = name || participant;
  tile.append(video, caption);
  if (isHost) {
    const snap = document.createElement("button");
    snap.type = "button";
    snap.className = "small";
    snap.textContent = t.snapshot;
    snap.addEventListener("click", () => snapshot(participant, video));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small danger";
    remove.textContent = t.remove;
    remove.addEventListener("click", () =>
      api(`/api/v1/visits/${visitId}/remove/`, { method: "POST", body: { user_id: Number(participant.slice(2)) } }),
    );
    tile.append(snap, remove);
  }
  const entry = { pc: null, tile, location: null };
  state.subscriptions.set(participant, entry);
  $("videos").append(tile);
  try {
    const joinInfo = await freshJoin();
    const pc = new RTCPeerConnection({ iceServers: joinInfo.ice_servers });
    entry.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.addEventListener("track", (event) => {
      stream.addTrack(event.track);
      video.srcObject = stream;
    });
    entry.location = await negotiate(
      pc,
      `${joinInfo.relay}/rooms/${joinInfo.room}/subscribe/${participant}`,
      joinInfo.token,
    );
    if (state.audioOnly) {
      tile.classList.add("audio-only");
      setVideoPaused(participant, true, joinInfo).catch(() => null);
    }
  } catch (error) {
    dropSubscription(participant);
    // The participant may not have published yet: try again a few times.
    if (attempt < 5 && (error.status === 404 || error.status === undefined)) {
      setTimeout(() => subscribe(participant, name, attempt + 1), 1000 * (attempt + 1));
    }
  }
}

function dropSubscription(participant) {
  const entry = state.subscriptions.get(participant);
  if (!entry) return;
  if (entry.pc) entry.pc.close();
  entry.tile.remove();
  state.subscriptions.delete(participant);
}

async function hangUp() {
  const token = state.publisher?.join?.token;
  for (const participant of [...state.subscriptions.keys()]) dropSubscription(participant);
  if (state.publisher) {
    state.publisher.pc.close();
    if (state.publisher.location) {
      fetch(state.publisher.location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => null);
    }
    state.publisher = null;
  }
  state.joined = false;
}

async function rejoin() {
  await hangUp();
  await refresh();
}

// --- Controls --------------------------------------------------------------------------

$("mute").addEventListener("click", (event) => {
  const on = event.currentTarget.getAttribute("aria-pressed") !== "true";
  for (const track of state.stream?.getAudioTracks() || []) track.enabled = !on;
  event.currentTarget.setAttribute("aria-pressed", String(on));
  event.currentTarget.textContent = on ? t.unmute : t.mute;
});

$("camera-off").addEventListener("click", (event) => {
  const off = event.currentTarget.getAttribute("aria-pressed") !== "true";
  for (const track of state.stream?.getVideoTracks() || []) track.enabled = !off;
  event.currentTarget.setAttribute("aria-pressed", String(off));
  event.currentTarget.textContent = off ? t.cameraOn : t.cameraOff;
});

$("audio-only").addEventListener("click", async (event) => {
  const on = event.currentTarget.getAttribute("aria-pressed") !== "true";
  await applyAudioOnly(on);
  await api(`/api/v1/visits/${visitId}/audio-only/`, { method: "POST", body: { audio_only: on } });
});

// --- Audio-only mode ---------------------------------------------------------------------
// Real on the wire, for poor connections: our camera stops sending (the sender's track is
// replaced by nothing) and the relay stops sending us everyone's video (each subscription
// is paused there with our own join token). Turning it off asks the publishers for a
// keyframe (the relay does), so pictures come back within about a second.

async function setVideoPaused(participant, paused, joinInfo) {
  const response = await fetch(`${joinInfo.relay}/rooms/${joinInfo.room}/subscriptions/${participant}/video`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${joinInfo.token}` },
    body: JSON.stringify({ paused }),
  });
  if (!response.ok) throw new Error(`relay answered ${response.status}`);
}

async function applyAudioOnly(on) {
  state.audioOnly = on;
  $("audio-only").setAttribute("aria-pressed", String(on));
  const sender = state.publisher?.pc.getSenders().find((s) => s.track?.kind === "video" || (!s.track && on === false));
  const videoTrack = state.stream?.getVideoTracks()[0] || null;
  if (sender) await sender.replaceTrack(on ? null : videoTrack);
  const connected = [...state.subscriptions].filter(([, entry]) => entry.location);
  for (const [, entry] of state.subscriptions) entry.tile.classList.toggle("audio-only", on);
  if (!connected.length) return;
  let joinInfo;
  try {
    joinInfo = await freshJoin();
  } catch {
    return; // the next subscription applies the mode again
  }
  await Promise.all(connected.map(([participant]) => setVideoPaused(participant, on, joinInfo).catch(() => null)));
}

$("leave").addEventListener("click", async () => {
  await hangUp();
  await api(`/api/v1/visits/${visitId}/leave/`, { method: "POST" }).catch(() => null);
  location.href = "/visits/";
});

async function snapshot(participant, video) {
  const userId = Number(participant.slice(2));
  await api(`/api/v1/visits/${visitId}/snapshot-notice/`, { method: "POST", body: { user_id: userId } });
  await new Promise((resolve) => setTimeout(resolve, 1500)); // the person sees the notice first
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth || 640;
  canvas.height = video.videoHeight || 480;
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  const form = new FormData();
  form.append("image", blob, "snapshot.jpg");
  form.append("user_id", String(userId));
  await api(`/api/v1/visits/${visitId}/snapshots/`, { method: "POST", form });
  notice(t.snapshotSaved);
}

if (isHost) {
  $("save-notes")?.addEventListener("click", () =>
    api(`/api/v1/visits/${visitId}/notes/`, { method: "PUT", body: { notes: $("notes").value } }),
  );
  $("end-visit")?.addEventListener("click", async () => {
    await api(`/api/v1/visits/${visitId}/end/`, { method: "POST", body: { summary: $("summary").value } });
    await hangUp();
    await refresh();
  });
}

// --- Recording: consent, the host's start/stop, the notice everyone sees --------------------
// The server keeps the rule (recording only while everyone in the visit agrees) and stops a
// recording itself when it breaks; the page shows the state it is told and asks for changes.

const recordingText = $("recording-panel")?.dataset || {};

// The page's recording texts mark their blanks {like_this}: Django's {% translate %}
// would double a "%" in the catalogue's key.
function fillRecording(template, values) {
  return (template || "").replace(/\{(\w+)\}/g, (_, key) => values[key] ?? "");
}

function showRecordingIndicator(recording) {
  $("recording-indicator").hidden = !recording;
}

function renderRecording(visit) {
  const panel = $("recording-panel");
  if (!panel) return;
  const live = visit.state === "waiting" || visit.state === "in_progress";
  const mine = visit.participants.find((p) => p.user === me);
  const mayOpenFiles = Boolean($("recording-files-show"));
  panel.hidden = !mine || (!live && !mayOpenFiles);
  showRecordingIndicator(live && visit.recording);
  const consent = $("recording-consent");
  consent.closest("label").hidden = !live;
  if (!consent.disabled) consent.checked = mine?.recording_consent === true;
  if (!live || mine?.recording_consent === true) $("recording-prompt").hidden = true;
  if (!isHost) return;
  const present = visit.participants.filter((p) => !["removed", "left"].includes(p.state));
  $("recording-consents").replaceChildren(
    ...present.map((person) => {
      const item = document.createElement("li");
      const answer = { true: recordingText.labelAgreed, false: recordingText.labelDeclined }[person.recording_consent];
      item.textContent = `${person.name}: ${answer || recordingText.labelUnasked}`;
      item.dataset.consent = String(person.recording_consent);
      return item;
    }),
  );
  const missing = present.filter((p) => p.recording_consent !== true).map((p) => p.name);
  const othersMissing = present.some((p) => p.user !== me && p.recording_consent !== true);
  $("recording-ask").hidden = !live || Boolean(visit.recording) || !othersMissing;
  const toggle = $("recording-toggle");
  toggle.hidden = !live;
  if (visit.recording) {
    toggle.textContent = recordingText.labelStop;
    toggle.disabled = false;
    const time = new Date(visit.recording.started_at).toLocaleTimeString("vi-VN", { hour: "2-digit", minute: "2-digit" });
    $("recording-why").textContent = fillRecording(recordingText.labelRunning, { time, name: visit.recording.started_by });
  } else {
    toggle.textContent = recordingText.labelStart;
    toggle.disabled = missing.length > 0 || visit.state !== "in_progress";
    $("recording-why").textContent = missing.length
      ? fillRecording(recordingText.labelWaiting, { names: missing.join(", ") })
      : visit.state !== "in_progress"
        ? recordingText.labelNotStarted
        : recordingText.labelReady;
  }
}

async function answerRecording(agree) {
  const box = $("recording-consent");
  box.disabled = true;
  try {
    await api(`/api/v1/visits/${visitId}/consent/`, { method: "POST", body: { recording: agree } });
    box.checked = agree;
    $("recording-prompt").hidden = true;
    notice(agree ? recordingText.labelConsentGiven : recordingText.labelConsentWithdrawn);
  } catch (error) {
    box.checked = state.visit?.participants.find((p) => p.user === me)?.recording_consent === true;
    notice(error.message || t.error, "error");
  } finally {
    box.disabled = false;
  }
}

$("recording-consent")?.addEventListener("change", (event) => answerRecording(event.currentTarget.checked));
$("recording-prompt-yes")?.addEventListener("click", () => answerRecording(true));
$("recording-prompt-no")?.addEventListener("click", () => answerRecording(false));

// The host asks those who have not agreed; their pages show the prompt (visit.recording_asked).
$("recording-ask")?.addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const { asked } = await api(`/api/v1/visits/${visitId}/recording/ask/`, { method: "POST" });
    const names = (state.visit?.participants || []).filter((p) => asked.includes(p.user)).map((p) => p.name);
    // Nobody left to ask (someone agreed just before the click): say everyone has.
    notice(asked.length ? fillRecording(recordingText.labelAskSent, { names: names.join(", ") }) : recordingText.labelReady);
  } catch (error) {
    notice(error.message || t.error, "error");
  } finally {
    button.disabled = false;
  }
});

$("recording-toggle")?.addEventListener("click", async (event) => {
  const toggle = event.currentTarget;
  const action = state.visit?.recording ? "stop" : "start";
  toggle.disabled = true;
  try {
    state.visit = await api(`/api/v1/visits/${visitId}/recording/${action}/`, { method: "POST" });
    renderRecording(state.visit);
  } catch (error) {
    notice(error.message || t.error, "error");
    await refresh();
  }
});

// The list of saved files is loaded on request only: every listing is an audited read.
async function showRecordingFiles() {
  const list = $("recording-files");
  if (!list) return;
  const files = await api(`/api/v1/visits/${visitId}/recordings/`);
  list.hidden = false;
  if (!files.length) {
    const empty = document.createElement("li");
    empty.className = "muted empty";
    empty.textContent = recordingText.labelNoFiles;
    list.replaceChildren(empty);
    return;
  }
  list.replaceChildren(
    ...files.map((file) => {
      const item = document.createElement("li");
      const when = new Date(file.started_at).toLocaleString("vi-VN");
      const size = `${(file.size / 1048576).toFixed(1)} MB`;
      item.append(`${file.name} · ${when} · ${size} `);
      const link = document.createElement("a");
      link.href = file.url;
      link.textContent = recordingText.labelDownload;
      link.setAttribute("download", "");
      item.append(link);
      return item;
    }),
  );
}

$("recording-files-show")?.addEventListener("click", () =>
  showRecordingFiles().catch((error) => notice(error.message || t.error, "error")),
);

realtime.addEventListener("event", async (event) => {
  const { topic, name, data } = event.detail;
  if (topic === "user") {
    if (name === "visit.recording_saved" && data?.visit === visitId) {
      notice(recordingText.labelSaved);
      if (!$("recording-files")?.hidden) showRecordingFiles().catch(() => null);
    }
    return;
  }
  if (data?.visit !== visitId) return;
  if (name === "visit.recording_asked") {
    if ((data.users || []).includes(me)) {
      $("recording-prompt-text").textContent = fillRecording(recordingText.labelAsked, { name: data.by });
      $("recording-prompt").hidden = false;
      $("recording-prompt-yes").focus();
    }
  } else if (name === "visit.recording_started") {
    showRecordingIndicator(true); // at once, before the page reloads the visit
    notice(recordingText.labelStarted, "warning");
    await refresh();
  } else if (name === "visit.recording_stopped") {
    if (state.visit) {
      state.visit = { ...state.visit, recording: null };
      renderRecording(state.visit); // at once; the refetch below confirms
    }
    showRecordingIndicator(false);
    notice(fillRecording(recordingText.labelStopped, { reason: data.reason_label || data.reason }));
    await refresh();
  } else if (name === "visit.recording_consent" && isHost) {
    const person = state.visit?.participants.find((p) => p.user === data.user);
    if (person) {
      person.recording_consent = data.consent;
      renderRecording(state.visit);
    }
    await refresh();
  }
});

// --- Invite a specialist (host only) -------------------------------------------------------
// Search the directory by name (debounced: one request per pause in typing), choose a
// person and a role, then POST the invitation; the "visit.invited" event refreshes the page.

function fill(template, values) {
  return template.replace(/%\((\w+)\)s/g, (_, key) => values[key] ?? "");
}

function readableError(error) {
  const fields = Object.values(error.data?.fields || {}).flat().join(" ");
  return [error.message || t.error, fields].filter(Boolean).join(" ");
}

if (isHost && $("invite-form")) {
  const invite = { chosen: null, timer: null, asked: 0 };
  const status = (text, kind = "") => {
    $("invite-status").textContent = text;
    $("invite-status").dataset.kind = kind;
  };
  const choose = (person) => {
    invite.chosen = person;
    $("invite-chosen").textContent = fill(t.inviteChosen, { name: person.name });
    $("invite-chosen").hidden = false;
    $("invite-results").replaceChildren();
    $("invite-role").focus();
  };
  const search = async (query) => {
    const asked = ++invite.asked;
    status(t.inviteSearching);
    let found;
    try {
      found = await api(`/visits/clinicians/?q=${encodeURIComponent(query)}`);
    } catch (error) {
      if (asked === invite.asked) status(readableError(error), "error");
      return;
    }
    if (asked !== invite.asked) return; // an answer to an older query
    const results = found?.results || [];
    status(results.length ? "" : t.inviteNoMatch);
    $("invite-results").replaceChildren(
      ...results.map((person) => {
        const item = document.createElement("li");
        const who = document.createElement("span");
        who.className = "person";
        const name = document.createElement("strong");
        name.textContent = person.title ? `${person.title} ${person.name}` : person.name;
        const where = document.createElement("span");
        where.className = "muted";
        where.textContent = [person.kind, person.facility, person.specialties.join(", ")].filter(Boolean).join(" · ");
        who.append(name, " ", where);
        const button = document.createElement("button");
        button.type = "button";
        button.className = "small";
        button.textContent = t.inviteChoose;
        button.setAttribute("aria-label", `${t.inviteChoose}: ${person.name}`);
        button.addEventListener("click", () => choose(person));
        item.append(who, button);
        return item;
      }),
    );
  };
  $("invite-query").addEventListener("input", () => {
    clearTimeout(invite.timer);
    invite.chosen = null;
    $("invite-chosen").hidden = true;
    const query = $("invite-query").value.trim();
    if (query.length < 2) {
      invite.asked += 1;
      $("invite-results").replaceChildren();
      status("");
      return;
    }
    invite.timer = setTimeout(() => search(query), 300);
  });
  $("invite-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!invite.chosen) {
      status(t.inviteChooseFirst, "error");
      $("invite-query").focus();
      return;
    }
    const role = $("invite-role");
    $("invite-send").disabled = true;
    try {
      await api(`/api/v1/visits/${visitId}/invite/`, {
        method: "POST",
        body: { user_id: invite.chosen.id, role: role.value },
      });
      status(fill(t.inviteSent, { name: invite.chosen.name, role: role.selectedOptions[0].textContent }), "ok");
      invite.chosen = null;
      $("invite-chosen").hidden = true;
      $("invite-query").value = "";
      await refresh();
    } catch (error) {
      status(readableError(error), "error");
    } finally {
      $("invite-send").disabled = false;
    }
  });
}

window.addEventListener("pagehide", () => {
  hangUp();
});

// Expose a little state for the browser tests (framesDecoded comes from getStats()).
window.telehealthVisit = {
  async framesDecoded() {
    let total = 0;
    for (const entry of state.subscriptions.values()) {
      const stats = await entry.pc?.getStats();
      stats?.forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "video") total += report.framesDecoded || 0;
      });
    }
    return total;
  },
  // What flows now, summed over our connections: received per kind, and what we send.
  async mediaStats() {
    const totals = { videoFramesDecoded: 0, videoBytesReceived: 0, audioPacketsReceived: 0, audioBytesReceived: 0, videoBytesSent: 0, audioBytesSent: 0 };
    const pcs = [...state.subscriptions.values()].map((entry) => entry.pc);
    if (state.publisher) pcs.push(state.publisher.pc);
    for (const pc of pcs) {
      const stats = await pc?.getStats();
      stats?.forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "video") {
          totals.videoFramesDecoded += report.framesDecoded || 0;
          totals.videoBytesReceived += report.bytesReceived || 0;
        } else if (report.type === "inbound-rtp" && report.kind === "audio") {
          totals.audioPacketsReceived += report.packetsReceived || 0;
          totals.audioBytesReceived += report.bytesReceived || 0;
        } else if (report.type === "outbound-rtp") {
          totals[report.kind === "video" ? "videoBytesSent" : "audioBytesSent"] += report.bytesSent || 0;
        }
      });
    }
    return totals;
  },
  state,
};

refresh().catch((error) => notice(error.message || t.error, "error"));
