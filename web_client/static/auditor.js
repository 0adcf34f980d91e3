import { show, staffLogin } from "./signaling.js";
import { apply, formatTime, has, label, onLanguage, register, switcher, t } from "./i18n.js";
import AUDITOR from "./lang/auditor.js";
import STAFF from "./lang/staff.js";

register(STAFF, AUDITOR);

const $ = (id) => document.getElementById(id);
const state = { page: 1, session: null, opened: null, t0: 0, duration: 0, players: [], pending: new Set() };
window.vteller = state;
const fmtTime = formatTime;  // local time with the zone shown, e.g. "2026-11-30 21:04:05 GMT+8"
// what each trail event, actor, flag and access means, in words (unknown ones as they are)
const word = (prefix, code) => (has(`${prefix}.${code}`) ? t(`${prefix}.${code}`) : code);
const eventLabel = (kind) => word("event", kind);
const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

async function api(path, options = {}) {
  const r = await fetch(path, { headers: { "Content-Type": "application/json" }, ...options });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ error: { message: r.statusText } }));
    throw new Error(e.error.message);
  }
  return r;
}

function cell(text) { const td = document.createElement("td"); td.textContent = text ?? ""; return td; }
// a cell of data (a name, an id, a reason someone typed): never translated
function raw(text) { const td = cell(text); td.translate = false; return td; }

async function search(page = 1) {
  $("error").textContent = "";
  const q = new URLSearchParams({ page });
  const day = (id) => $(id).value && new Date(`${$(id).value}T00:00`).getTime() / 1000;  // local midnight
  if ($("f-from").value) q.set("from", day("f-from"));
  if ($("f-to").value) q.set("to", day("f-to") + 86400);
  for (const [id, key] of [["f-teller", "teller"], ["f-customer", "customer"], ["f-business", "business_type"],
    ["f-decision", "decision"], ["f-outcome", "outcome"], ["f-flag", "flag"]]) if ($(id).value) q.set(key, $(id).value);
  try {
    const res = await (await api(`/api/audit/sessions?${q}`)).json();
    state.page = res.page;
    $("results").replaceChildren(...res.rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.session = row.session_id;
      const flags = [...row.flags, ...(row.legal_hold ? ["legal_hold"] : []), ...(row.purged ? ["purged"] : [])];
      tr.append(cell(fmtTime(row.queued_at)), raw(row.customer_id), raw(row.teller), cell(label(row.business_type)),
        cell(label(row.decision)), cell(row.outcome ? label(row.outcome) + (row.outcome_reason ? ` (${label(row.outcome_reason)})` : "") : ""),
        cell(flags.map((f) => word("flag", f)).join(", ")));
      const td = document.createElement("td");
      const b = document.createElement("button"); b.className = "small"; b.textContent = t("a.select");
      b.onclick = () => select(row.session_id);
      td.append(b); tr.append(td); return tr;
    }));
    const pages = Math.max(1, Math.ceil(res.total / res.page_size));
    $("page-info").textContent = t("a.page_info", { page: res.page, pages, total: res.total });
    $("prev").disabled = res.page <= 1; $("next").disabled = res.page >= pages;
  } catch (e) { $("error").textContent = e.message; }
}

function select(id) {
  state.session = id; state.opened = null;
  $("case-id").textContent = id; show($("case"), true); show($("player"), false);
  $("verification").replaceChildren();
  $("approval-result").textContent = "";
  for (const id of ["open-error", "hold-error", "export-result"]) $(id).textContent = "";
  show($("four-eyes"), state.pending.has(id));
}

async function loadApprovals() {
  try {
    const res = await (await api("/api/audit/approvals")).json();
    state.pending = new Set(res.approvals.map((a) => a.session_id));
    show($("approvals-empty"), res.approvals.length === 0);
    $("approvals").replaceChildren(...res.approvals.map((a) => {
      const tr = document.createElement("tr");
      tr.append(cell(fmtTime(a.requested_at)), cell(label(a.business_type)), raw(a.teller), raw(a.session_id));
      const td = document.createElement("td");
      const b = document.createElement("button"); b.className = "small"; b.textContent = t("a.review");
      b.onclick = () => select(a.session_id);
      td.append(b); tr.append(td); return tr;
    }));
  } catch (e) { $("error").textContent = e.message; }
}

async function decideApproval(approve) {
  try {
    const res = await (await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/approval`, {
      method: "POST", body: JSON.stringify({ approve, reason: $("approval-reason").value }) })).json();
    $("approval-result").textContent = res.status === "approved" ? t("a.approval_confirmed") : t("a.approval_rejected");
    loadApprovals();
  } catch (e) { $("approval-result").textContent = e.message; }
}

function renderVerification(v, purged) {
  const box = $("verification");
  box.className = v.ok ? "verified" : "failed";
  box.dataset.ok = v.ok;
  const h = document.createElement("h3");
  h.textContent = purged ? (v.ok ? t("a.purged_ok") : t("a.purged_bad"))
    : (v.ok ? t("a.verified") + (v.incomplete ? t("a.verified_incomplete") : "") : t("a.failed"));
  const ul = document.createElement("ul");
  for (const p of v.problems) { const li = document.createElement("li"); li.textContent = p; li.className = "problem"; ul.append(li); }
  const n = v.counts;  // the figures behind the checked lines, worded here; else the lines
  const checked = !n ? v.checked : [
    n.events !== undefined && t("a.checked_events", { n: n.events }),
    n.checkpoints !== undefined && t("a.checked_checkpoints", { n: n.checkpoints }),
    n.log_size !== undefined && t("a.checked_log", { entry: n.log_entry, size: n.log_size }),
    n.tracks !== undefined && t("a.checked_tracks", { n: n.tracks }),
    n.contents_skipped && t("a.checked_skipped")].filter(Boolean);
  for (const c of checked) { const li = document.createElement("li"); li.textContent = c; ul.append(li); }
  box.replaceChildren(h, ul);
}

async function openSession() {
  $("open-error").textContent = "";
  try {
    const res = await (await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/open`, {
      method: "POST", body: JSON.stringify({ reason: $("reason").value }) })).json();
    state.opened = res;
    renderVerification(res.verification, res.purged);
    $("hold-state").textContent = res.legal_hold ? t("a.on_hold", { reason: res.legal_hold.reason }) : "";
    $("hold").dataset.i18n = res.legal_hold ? "a.clear_legal_hold" : "a.set_legal_hold"; $("hold").textContent = t($("hold").dataset.i18n);
    if (res.purged) return;
    buildPlayer(res);
  } catch (e) { $("open-error").textContent = e.message; }
}

function buildPlayer(res) {
  state.players.forEach((p) => p.el.pause());
  $("videos").replaceChildren(); state.duration = 0;
  const media = res.tracks.filter((tr) => tr.kind !== "image" && tr.starts_at != null);
  state.t0 = Math.min(...media.map((tr) => tr.starts_at), ...res.events.map((e) => e.at));
  // replay starts where the media starts, not at the first event (the queue)
  state.mediaStart = media.length ? Math.min(...media.map((tr) => tr.starts_at)) - state.t0 : 0;
  state.players = media.map((tr) => {
    const el = document.createElement(tr.kind === "audio" ? "audio" : "video");
    el.src = `/api/audit/sessions/${encodeURIComponent(res.session_id)}/media/${encodeURIComponent(tr.name)}?grant=${encodeURIComponent(res.grant)}`;
    el.preload = "auto"; el.dataset.track = tr.name; el.title = tr.name.split(".").slice(0, 2).map((part) => word("track", part)).join(" ");
    el.onloadedmetadata = () => {
      state.duration = Math.max(state.duration, tr.starts_at - state.t0 + (isFinite(el.duration) ? el.duration : 0));
      $("scrub").max = state.duration; drawMarkers(state.events || []);
    };
    if (tr.kind === "video") { const fig = document.createElement("figure"); const cap = document.createElement("figcaption"); cap.textContent = tr.name.split(".").slice(0, 2).map((part) => word("track", part)).join(" "); fig.append(el, cap); $("videos").append(fig); }
    else $("videos").append(el);
    return { el, offset: tr.starts_at - state.t0 };
  });
  $("timeline").replaceChildren(...res.events.map((e) => {
    const li = document.createElement("li");
    const b = document.createElement("button"); b.className = "small secondary";
    const at = e.at - state.t0;
    b.textContent = clock(Math.max(0, at)); b.dataset.t = at;
    b.onclick = () => seek(at);
    const place = e.kind === "location.reported"
      ? t("a.place", { lat: e.lat.toFixed(4), lon: e.lon.toFixed(4), m: Math.round(e.accuracy_m) }) + (e.region ? t("a.place_in", { region: e.region }) : "") : "";
    const code = e.verdict || e.state || e.decision || e.evidence || e.disposition || e.reason;
    const extra = place || e.step_title || (code ? label(code) : "") || e.destination || "";
    li.append(b, document.createTextNode(` ${word("actor", e.actor)}: ${eventLabel(e.kind)}${extra ? ` (${extra})` : ""}`));
    li.dataset.kind = e.kind;  // the event's own name (as in exported bundles), for tools
    return li;
  }));
  drawMarkers(res.events);
  seek(state.mediaStart);
  $("evidence").replaceChildren(...res.tracks.filter((tr) => tr.kind === "image").map((tr) => {
    const img = document.createElement("img");
    img.src = `/api/audit/sessions/${encodeURIComponent(res.session_id)}/media/${encodeURIComponent(tr.name)}?grant=${encodeURIComponent(res.grant)}`;
    img.alt = t("a.evidence_frame"); img.className = "evidence"; return img;
  }));
  show($("player"), true);
}

// the events as ticks on the scrubber (redrawn when the duration is known)
function drawMarkers(events) {
  state.events = events;
  const span = Number($("scrub").max) || 1;
  $("markers").replaceChildren(...events.map((e) => {
    const m = document.createElement("span");
    m.className = "marker"; m.dataset.kind = e.kind;
    m.style.left = `${Math.min(100, Math.max(0, ((e.at - state.t0) / span) * 100))}%`;
    m.title = `${clock(Math.max(0, e.at - state.t0))} ${eventLabel(e.kind)}`;
    return m;
  }));
}

function seek(t) {
  state.position = t;
  for (const p of state.players) {
    const local = t - p.offset;
    if (local >= 0) p.el.currentTime = local;
  }
  $("scrub").value = t; $("clock").textContent = clock(t);
}

function tick() {
  const master = state.players.find((p) => !p.el.paused);
  if (master) {
    const t = master.offset + master.el.currentTime;
    $("scrub").value = t; $("clock").textContent = clock(t); state.position = t;
  }
  requestAnimationFrame(tick);
}

async function exportBundle() {
  $("export-result").textContent = "";
  const bar = $("export-progress"); show(bar, true); bar.removeAttribute("value");
  try {
    const r = await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/export`, {
      method: "POST", body: JSON.stringify({ reason: $("export-reason").value }) });
    const total = Number(r.headers.get("Content-Length")) || 0;
    const reader = r.body.getReader(); const parts = []; let got = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value); got += value.length;
      if (total) { bar.max = total; bar.value = got; }
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob(parts, { type: "application/zip" }));
    a.download = `vteller-${state.session}.zip`; a.click();
    $("export-result").textContent = t("a.exported", { mb: (got / 1e6).toFixed(1) });
  } catch (e) { $("export-result").textContent = e.message; }
  show(bar, false);
}

async function toggleHold() {
  const hold = !state.opened?.legal_hold;
  try {
    await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/hold`, {
      method: "POST", body: JSON.stringify({ hold, reason: $("hold-reason").value }) });
    state.opened.legal_hold = hold ? { reason: $("hold-reason").value } : null;
    $("hold-state").textContent = hold ? t("a.on_hold", { reason: $("hold-reason").value }) : t("a.hold_cleared");
    $("hold").dataset.i18n = hold ? "a.clear_legal_hold" : "a.set_legal_hold"; $("hold").textContent = t($("hold").dataset.i18n);
    $("hold-error").textContent = "";
  } catch (e) { $("hold-error").textContent = e.message; }
}

async function loadAccess() {
  try {
    const res = await (await api("/api/audit/access-log")).json();
    $("access-state").textContent = res.verification.ok ? t("a.access_verified", { n: res.verification.entries }) : t("a.access_altered");
    $("access-rows").replaceChildren(...res.entries.map((e) => {
      const tr = document.createElement("tr");
      tr.append(cell(fmtTime(e.at)), raw(e.user), cell(word("access", e.action)), raw(e.session_id), raw(e.reason)); return tr;
    }));
  } catch (e) { $("access-state").textContent = e.message; }
}

async function start() {
  const me = await (await fetch("/api/me")).json();
  show($("login"), false); show($("console"), true);
  $("me").textContent = me.display_name;
  if (me.role !== "auditor") { $("error").textContent = t("a.auditors_only"); return; }
  show($("access"), true);
  loadApprovals();
  search(1);
}

$("search-form").onsubmit = (ev) => { ev.preventDefault(); search(1); };
$("prev").onclick = () => search(state.page - 1);
$("next").onclick = () => search(state.page + 1);
$("open").onclick = openSession;
$("play").onclick = () => { seek(state.position || 0); state.players.forEach((p) => p.el.play().catch(() => {})); };
$("pause").onclick = () => state.players.forEach((p) => p.el.pause());
$("scrub").oninput = () => seek(Number($("scrub").value));
$("export").onclick = exportBundle;
$("hold").onclick = toggleHold;
$("confirm-approval").onclick = () => decideApproval(true);
$("reject-approval").onclick = () => decideApproval(false);
$("access-load").onclick = loadAccess;
$("logout").onclick = async () => { await fetch("/api/logout", { method: "POST" }); location.reload(); };
requestAnimationFrame(tick);
apply();
switcher($("lang"));
// a switch redraws what the console wrote itself: the lists now, an opened session on reopening
onLanguage(() => { if (!$("console").hidden) { loadApprovals(); search(state.page); } });
staffLogin(start);
