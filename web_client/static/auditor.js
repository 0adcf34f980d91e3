import { show, staffLogin } from "./signaling.js";

const $ = (id) => document.getElementById(id);
const state = { page: 1, session: null, opened: null, t0: 0, duration: 0, players: [], pending: new Set() };
window.vteller = state;
// local time with the zone shown (the browser's Intl API), e.g. "2026-11-30 21:04:05 GMT+8"
const TIME = new Intl.DateTimeFormat("sv-SE", { year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
const fmtTime = (t) => TIME.format(new Date(t * 1000));
// what each trail event means, in words (unknown kinds are shown as they are)
const EVENT_LABELS = {
  "queued": "joined the queue", "offered": "offered to a teller", "accepted": "teller accepted",
  "offer.failed": "offer not taken", "offer.skipped": "not offered (teller network)",
  "media.connected": "media connected", "media.failed": "media failed", "media.closed": "media closed",
  "media.dropped": "connection dropped", "ended": "call ended", "closed": "session closed",
  "abandoned": "left before being served", "evidence": "evidence recorded",
  "review.decision": "decision", "review.refused": "decision refused",
  "review.pending_audit": "approval waits for a second person",
  "consent.requested": "screen share asked", "consent.granted": "screen share allowed",
  "consent.active": "screen shared", "consent.stopped": "screen share stopped",
  "consent.denied": "screen share denied", "consent.revoked": "screen share revoked",
  "nav.pushed": "app page suggested", "nav.opened": "app page opened",
  "identity.verdict": "face check result", "identity.snapshot": "face snapshot kept",
  "identity.liveness_result": "liveness result", "identity.judged": "teller judged the face",
  "identity.presence": "presence alert", "script.read": "statement read",
  "script.question": "customer asked about a statement", "script.confirmed": "statement confirmed",
  "otp.requested": "one-time code asked", "otp.sent": "one-time code sent",
  "otp.entered": "one-time code entered", "otp.delivery_failed": "one-time code not sent",
  "location.reported": "customer's location", "id_document.captured": "ID document captured",
  "session.sealed_incomplete": "sealed incomplete (node stopped)", "handed_over": "handed over",
  "continued_from": "continues an earlier call",
};
const eventLabel = (kind) => EVENT_LABELS[kind] || kind;
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
      const flags = [...row.flags, ...(row.legal_hold ? ["legal hold"] : []), ...(row.purged ? ["purged"] : [])];
      tr.append(cell(fmtTime(row.queued_at)), cell(row.customer_id), cell(row.teller), cell(row.business_type),
        cell(row.decision), cell(row.outcome ? row.outcome + (row.outcome_reason ? ` (${row.outcome_reason})` : "") : ""),
        cell(flags.join(", ")));
      const td = document.createElement("td");
      const b = document.createElement("button"); b.className = "small"; b.textContent = "Select";
      b.onclick = () => select(row.session_id);
      td.append(b); tr.append(td); return tr;
    }));
    const pages = Math.max(1, Math.ceil(res.total / res.page_size));
    $("page-info").textContent = `page ${res.page} of ${pages} (${res.total} sessions)`;
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
      tr.append(cell(fmtTime(a.requested_at)), cell(a.business_type), cell(a.teller), cell(a.session_id));
      const td = document.createElement("td");
      const b = document.createElement("button"); b.className = "small"; b.textContent = "Review";
      b.onclick = () => select(a.session_id);
      td.append(b); tr.append(td); return tr;
    }));
  } catch (e) { $("error").textContent = e.message; }
}

async function decideApproval(approve) {
  try {
    const res = await (await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/approval`, {
      method: "POST", body: JSON.stringify({ approve, reason: $("approval-reason").value }) })).json();
    $("approval-result").textContent = res.status === "approved" ? "Approval confirmed" : "Approval rejected";
    loadApprovals();
  } catch (e) { $("approval-result").textContent = e.message; }
}

function renderVerification(v, purged) {
  const box = $("verification");
  box.className = v.ok ? "verified" : "failed";
  box.dataset.ok = v.ok;
  const h = document.createElement("h3");
  h.textContent = purged ? (v.ok ? "Purged under retention: tombstone verified" : "PURGED: TOMBSTONE NOT VERIFIED")
    : (v.ok ? "Integrity verified" + (v.incomplete ? " (recording incomplete: server stopped)" : "") : "INTEGRITY CHECK FAILED");
  const ul = document.createElement("ul");
  for (const p of v.problems) { const li = document.createElement("li"); li.textContent = p; li.className = "problem"; ul.append(li); }
  for (const c of v.checked) { const li = document.createElement("li"); li.textContent = c; ul.append(li); }
  box.replaceChildren(h, ul);
}

async function openSession() {
  $("open-error").textContent = "";
  try {
    const res = await (await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/open`, {
      method: "POST", body: JSON.stringify({ reason: $("reason").value }) })).json();
    state.opened = res;
    renderVerification(res.verification, res.purged);
    $("hold-state").textContent = res.legal_hold ? `on hold: ${res.legal_hold.reason}` : "";
    $("hold").textContent = res.legal_hold ? "Clear legal hold" : "Set legal hold";
    if (res.purged) return;
    buildPlayer(res);
  } catch (e) { $("open-error").textContent = e.message; }
}

function buildPlayer(res) {
  state.players.forEach((p) => p.el.pause());
  $("videos").replaceChildren(); state.duration = 0;
  const media = res.tracks.filter((t) => t.kind !== "image" && t.starts_at != null);
  state.t0 = Math.min(...media.map((t) => t.starts_at), ...res.events.map((e) => e.at));
  // replay starts where the media starts, not at the first event (the queue)
  state.mediaStart = media.length ? Math.min(...media.map((t) => t.starts_at)) - state.t0 : 0;
  state.players = media.map((t) => {
    const el = document.createElement(t.kind === "audio" ? "audio" : "video");
    el.src = `/api/audit/sessions/${encodeURIComponent(res.session_id)}/media/${encodeURIComponent(t.name)}?grant=${encodeURIComponent(res.grant)}`;
    el.preload = "auto"; el.dataset.track = t.name; el.title = t.name;
    el.onloadedmetadata = () => {
      state.duration = Math.max(state.duration, t.starts_at - state.t0 + (isFinite(el.duration) ? el.duration : 0));
      $("scrub").max = state.duration; drawMarkers(state.events || []);
    };
    if (t.kind === "video") { const fig = document.createElement("figure"); const cap = document.createElement("figcaption"); cap.textContent = t.name.split(".").slice(0, 2).join(" "); fig.append(el, cap); $("videos").append(fig); }
    else $("videos").append(el);
    return { el, offset: t.starts_at - state.t0 };
  });
  $("timeline").replaceChildren(...res.events.map((e) => {
    const li = document.createElement("li");
    const b = document.createElement("button"); b.className = "small secondary";
    const t = e.at - state.t0;
    b.textContent = clock(Math.max(0, t)); b.dataset.t = t;
    b.onclick = () => seek(t);
    const place = e.kind === "location.reported"
      ? `${e.lat.toFixed(4)}, ${e.lon.toFixed(4)} ±${Math.round(e.accuracy_m)} m${e.region ? ` in ${e.region}` : ""}` : "";
    const extra = place || e.step_title || e.verdict || e.state || e.decision || e.evidence || e.destination || e.reason || "";
    li.append(b, document.createTextNode(` ${e.actor}: ${eventLabel(e.kind)}${extra ? ` (${extra})` : ""}`));
    li.dataset.kind = e.kind; li.title = e.kind;
    return li;
  }));
  drawMarkers(res.events);
  seek(state.mediaStart);
  $("evidence").replaceChildren(...res.tracks.filter((t) => t.kind === "image").map((t) => {
    const img = document.createElement("img");
    img.src = `/api/audit/sessions/${encodeURIComponent(res.session_id)}/media/${encodeURIComponent(t.name)}?grant=${encodeURIComponent(res.grant)}`;
    img.alt = "best-matching verification frame"; img.className = "evidence"; return img;
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
    $("export-result").textContent = `exported ${(got / 1e6).toFixed(1)} MB`;
  } catch (e) { $("export-result").textContent = e.message; }
  show(bar, false);
}

async function toggleHold() {
  const hold = !state.opened?.legal_hold;
  try {
    await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/hold`, {
      method: "POST", body: JSON.stringify({ hold, reason: $("hold-reason").value }) });
    state.opened.legal_hold = hold ? { reason: $("hold-reason").value } : null;
    $("hold-state").textContent = hold ? `on hold: ${$("hold-reason").value}` : "hold cleared";
    $("hold").textContent = hold ? "Clear legal hold" : "Set legal hold";
    $("hold-error").textContent = "";
  } catch (e) { $("hold-error").textContent = e.message; }
}

async function loadAccess() {
  try {
    const res = await (await api("/api/audit/access-log")).json();
    $("access-state").textContent = res.verification.ok ? `(${res.verification.entries} entries, chain verified)` : "(ACCESS LOG ALTERED)";
    $("access-rows").replaceChildren(...res.entries.map((e) => {
      const tr = document.createElement("tr");
      tr.append(cell(fmtTime(e.at)), cell(e.user), cell(e.action), cell(e.session_id), cell(e.reason)); return tr;
    }));
  } catch (e) { $("access-state").textContent = e.message; }
}

async function start() {
  const me = await (await fetch("/api/me")).json();
  show($("login"), false); show($("console"), true);
  $("me").textContent = me.display_name;
  if (me.role !== "auditor") { $("error").textContent = "This console is for auditors."; return; }
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
staffLogin(start);
