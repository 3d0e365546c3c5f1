// The coordinators' page: coverage of a province (or the country) and the review
// of auto-assignment proposals. A run's progress arrives live on the socket
// (topic network.run.<id>); the page also polls, so a lost event only delays it.

import { Realtime, api } from "./realtime.js";

const root = document.getElementById("coverage-page");
const manageable = new Set(root.dataset.manage.split(",").filter(Boolean));
const national = root.dataset.national === "1";
const t = JSON.parse(document.getElementById("network-strings").textContent);
const $ = (id) => document.getElementById(id);
const realtime = new Realtime({ statusElement: $("connection") });

const state = { run: null, page: 1, pages: 1, poll: null };

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

function notice(text, kind = "info") {
  const box = $("notice");
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => (box.hidden = true), 8000);
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

const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)} %`);
const num = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString());

function table(headers, rows) {
  if (!rows.length) return h("p", { class: "muted empty" }, t.nobody);
  return h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((c) => h("td", {}, c))))),
  );
}

function query() {
  const params = new URLSearchParams();
  const province = $("province").value;
  if (province) params.set("province", province);
  const specialty = $("specialty-filter").value.trim();
  if (specialty) params.set("specialty", specialty);
  return params.toString();
}

// --- Coverage -------------------------------------------------------------------------

async function loadCoverage() {
  $("loading").hidden = false;
  const q = query();
  $("csv-link").href = `/api/v1/network/coverage/export/${q ? `?${q}` : ""}`;
  const report = await run(() => api(`/api/v1/network/coverage/${q ? `?${q}` : ""}`));
  $("loading").hidden = true;
  if (!report) return;
  const totals = report.totals;
  $("totals").replaceChildren(
    h("dt", {}, t.mentees), h("dd", {}, num(totals.mentees)),
    h("dt", {}, t.covered), h("dd", {}, `${num(totals.covered)} (${pct(totals.coverage)})`),
    h("dt", {}, t.mentors), h("dd", {}, num(totals.mentors)),
    h("dt", {}, t.places), h("dd", {}, `${num(totals.used)} / ${num(totals.places)} (${pct(totals.places_used)})`),
    h("dt", {}, t.overQuota), h("dd", {}, num(totals.over)),
    h("dt", {}, t.underQuota), h("dd", {}, num(totals.under)),
  );
  const byProvince = !report.province;
  $("breakdown").replaceChildren(
    byProvince
      ? table([t.province, t.mentees, t.covered, t.coverage, t.mentors, t.used, t.overQuota],
          report.provinces.map((p) => [p.name, num(p.mentees), num(p.covered), pct(p.coverage), num(p.mentors), `${num(p.used)} / ${num(p.places)}`, num(p.over)]))
      : table([t.facility, t.level, t.mentees, t.covered, t.coverage, t.mentors, t.used, t.overQuota],
          report.facilities.map((f) => [f.name, t.levels[f.level], num(f.mentees), num(f.covered), pct(f.coverage), num(f.mentors), `${num(f.used)} / ${num(f.places)}`, num(f.over)])),
  );
  $("specialties").replaceChildren(
    table([t.specialty, t.mentees, t.covered, t.coverage],
      report.specialties.map((s) => [s.name, num(s.mentees), num(s.covered), pct(s.coverage)])),
  );
  const people = (items, extra) =>
    items.length
      ? items.map((p) => h("li", {}, h("strong", {}, p.name), h("span", { class: "muted" }, ` · ${p.facility} (${t.levels[p.level]})`), extra ? h("span", {}, extra(p)) : null))
      : [h("li", { class: "muted empty" }, t.nobody)];
  const quota = (p) => ` ${Object.entries(p.used).map(([l, n]) => `${t.levels[l]}: ${n}/${p.quota[l] ?? 0}`).join(", ")}`;
  $("no-mentor").replaceChildren(...people(report.no_mentor));
  $("over-quota").replaceChildren(...people(report.over_quota, quota));
  $("under-quota").replaceChildren(...people(report.under_quota, quota));
  $("run-form").hidden = !(national || manageable.has($("province").value));
}

$("scope-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadCoverage();
});

// --- Auto-assignment runs ------------------------------------------------------------------

function runRow(r) {
  return [
    h("button", { type: "button", class: "link", onclick: () => showRun(r.id) }, `#${r.id}`),
    r.province || t.national,
    t.runStates[r.state] || r.state,
    `${num(r.assigned)} / ${num(r.mentees)} (${pct(r.coverage)})`,
    num(r.cost),
    `${num(r.greedy_assigned)} (${pct(r.greedy_coverage)}) · ${num(r.greedy_cost)}`,
    r.timings && r.timings.total ? `${r.timings.total} s` : "–",
  ];
}

async function loadRuns() {
  const runs = await run(() => api("/api/v1/network/assignment-runs/"));
  if (!runs) return;
  $("runs").replaceChildren(table([t.run, t.province, t.state, t.assigned, t.cost, t.greedyAssigned, t.totalTime], runs.map(runRow)));
  const active = runs.find((r) => ["queued", "running", "applying"].includes(r.state));
  if (active) follow(active.id);
}

function follow(runId) {
  realtime.watch(`network.run.${runId}`);
  clearInterval(state.poll);
  state.poll = setInterval(() => refreshRun(runId), 3000);
  refreshRun(runId);
}

function showProgress(progress, stage) {
  $("run-progress").hidden = false;
  $("progress-bar").value = progress;
  $("progress-stage").textContent = `${progress} % ${t.stages[stage] || stage || ""}`;
}

async function refreshRun(runId) {
  const r = await run(() => api(`/api/v1/network/assignment-runs/${runId}/`));
  if (!r) return;
  showProgress(r.progress, r.stage);
  if (r.state === "applying" && r.error) {
    // The sweeper gave up resending the apply task: stop waiting and say so.
    clearInterval(state.poll);
    $("run-progress").hidden = true;
    notice(t.applyStopped, "error");
    return;
  }
  if (!["queued", "running", "applying"].includes(r.state)) {
    clearInterval(state.poll);
    $("run-progress").hidden = true;
    loadRuns();
    showRun(runId);
    if (r.state === "failed") notice(r.error || t.error, "error");
  }
}

realtime.addEventListener("event", (event) => {
  const { name, data } = event.detail;
  if (!name.startsWith("assignment.")) return;
  showProgress(data.progress ?? 100, data.stage || t.runStates[data.state] || "");
  if (data.state && !["queued", "running", "applying"].includes(data.state)) refreshRun(data.run);
});

$("run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { province: $("province").value || null };
  const km = Number($("max-distance").value);
  if (km) body.max_distance_km = km;
  const created = await run(() => api("/api/v1/network/assignment-runs/", { method: "POST", body }), event.submitter);
  if (created) {
    notice(t.started);
    follow(created.id);
    loadRuns();
  }
});

// --- Proposals ------------------------------------------------------------------------------

async function showRun(runId, page = 1) {
  const r = await run(() => api(`/api/v1/network/assignment-runs/${runId}/`));
  if (!r) return;
  state.run = r;
  state.page = page;
  $("proposals-card").hidden = false;
  $("run-summary").replaceChildren(
    h("dt", {}, t.assigned), h("dd", {}, `${num(r.assigned)} / ${num(r.mentees)} (${pct(r.coverage)})`),
    h("dt", {}, t.cost), h("dd", {}, num(r.cost)),
    h("dt", {}, t.greedyAssigned), h("dd", {}, `${num(r.greedy_assigned)} (${pct(r.greedy_coverage)})`),
    h("dt", {}, t.greedyCost), h("dd", {}, num(r.greedy_cost)),
    h("dt", {}, t.solveTime), h("dd", {}, r.timings && r.timings.solve !== undefined ? `${r.timings.solve} s` : "–"),
    h("dt", {}, t.totalTime), h("dd", {}, r.timings && r.timings.total !== undefined ? `${r.timings.total} s` : "–"),
  );
  const reviewable = r.state === "proposed";
  for (const id of ["accept-selected", "reject-selected", "accept-all", "apply"]) $(id).disabled = !reviewable;
  const status = $("proposal-status").value;
  const listing = await run(() => api(`/api/v1/network/assignment-runs/${runId}/proposals/?page=${page}&page_size=50${status ? `&status=${status}` : ""}`));
  if (!listing) return;
  state.pages = Math.max(1, Math.ceil(listing.count / 50));
  $("page-label").textContent = `${t.page} ${page} / ${state.pages}`;
  $("prev-page").disabled = page <= 1;
  $("next-page").disabled = page >= state.pages;
  $("proposals").replaceChildren(
    table(["", t.mentors, t.mentees, t.reason, t.status],
      listing.results.map((p) => [
        h("input", { type: "checkbox", value: p.id, "aria-label": `${p.mentor.name} → ${p.mentee.name}`, disabled: !reviewable }),
        `${p.mentor.name} (${p.mentor.facility.name})`,
        `${p.mentee.name} (${p.mentee.facility.name}, ${t.levels[p.mentee.level]})`,
        p.reason,
        p.note ? `${t.proposalStatuses[p.status]}: ${p.note}` : t.proposalStatuses[p.status],
      ])),
  );
}

function selected() {
  return [...document.querySelectorAll("#proposals input:checked")].map((i) => Number(i.value));
}

async function review(decision, ids, button) {
  const body = ids ? { decision, proposal_ids: ids } : { decision };
  const done = await run(() => api(`/api/v1/network/assignment-runs/${state.run.id}/review/`, { method: "POST", body }), button);
  if (done) showRun(state.run.id, state.page);
}

$("accept-selected").addEventListener("click", (e) => review("accept", selected(), e.target));
$("reject-selected").addEventListener("click", (e) => review("reject", selected(), e.target));
$("accept-all").addEventListener("click", (e) => review("accept", null, e.target));
$("apply").addEventListener("click", async (e) => {
  const done = await run(() => api(`/api/v1/network/assignment-runs/${state.run.id}/apply/`, { method: "POST" }), e.target);
  if (done) {
    notice(t.applied);
    follow(state.run.id);
  }
});
$("proposal-status").addEventListener("change", () => state.run && showRun(state.run.id, 1));
$("prev-page").addEventListener("click", () => state.run && showRun(state.run.id, state.page - 1));
$("next-page").addEventListener("click", () => state.run && showRun(state.run.id, state.page + 1));

loadCoverage();
loadRuns();
