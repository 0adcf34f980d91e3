import { show, staffLogin } from "./signaling.js";

const $ = (id) => document.getElementById(id);
const state = { page: 1, session: null, opened: null, t0: 0, duration: 0, players: [], pending: new Set() };
window.vteller = state;
const fmtTime = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
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
  const day = (id) => $(id).value && Date.parse($(id).value) / 1000;
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
      method: "POST", body: JSON.stringify({ approve, reason: $("reason").value }) })).json();
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
  $("error").textContent = "";
  try {
    const res = await (await api(`/api/audit/sessions/${encodeURIComponent(state.session)}/open`, {
      method: "POST", body: JSON.stringify({ reason: $("reason").value }) })).json();
    state.opened = res;
    renderVerification(res.verification, res.purged);
    $("hold-state").textContent = res.legal_hold ? `on hold: ${res.legal_hold.reason}` : "";
    $("hold").textContent = res.legal_hold ? "Clear legal hold" : "Set legal hold";
    if (res.purged) return;
    buildPlayer(res);
  } catch (e) { $("error").textContent = e.message; }
}

function buildPlayer(res) {
  state.players.forEach((p) => p.el.pause());
  $("videos").replaceChildren(); state.duration = 0;
  const media = res.tracks.filter((t) => t.kind !== "image" && t.starts_at != null);
  state.t0 = Math.min(...media.map((t) => t.starts_at), ...res.events.map((e) => e.at));
  state.players = media.map((t) => {
    const el = document.createElement(t.kind === "audio" ? "audio" : "video");
    el.src = `/api/audit/sessions/${encodeURIComponent(res.session_id)}/media/${encodeURIComponent(t.name)}?grant=${encodeURIComponent(res.grant)}`;
    el.preload = "auto"; el.dataset.track = t.name; el.title = t.name;
    el.onloadedmetadata = () => { state.duration = Math.max(state.duration, t.starts_at - state.t0 + (isFinite(el.duration) ? el.duration : 0)); $("scrub").max = state.duration; };
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
    li.append(b, document.createTextNode(` ${e.actor}: ${e.kind}${extra ? ` (${extra})` : ""}`));
    li.dataset.kind = e.kind;
    return li;
  }));
  $("evidence").replaceChildren(...res.tracks.filter((t) => t.kind === "image").map((t) => {
    const img = document.createElement("img");
    img.src = `/api/audit/sessions/${encodeURIComponent(res.session_id)}/media/${encodeURIComponent(t.name)}?grant=${encodeURIComponent(res.grant)}`;
    img.alt = "best-matching verification frame"; img.className = "evidence"; return img;
  }));
  show($("player"), true);
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
      method: "POST", body: JSON.stringify({ reason: $("reason").value }) });
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
      method: "POST", body: JSON.stringify({ hold, reason: $("reason").value }) });
    state.opened.legal_hold = hold ? { reason: $("reason").value } : null;
    $("hold-state").textContent = hold ? `on hold: ${$("reason").value}` : "hold cleared";
    $("hold").textContent = hold ? "Clear legal hold" : "Set legal hold";
  } catch (e) { $("error").textContent = e.message; }
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
