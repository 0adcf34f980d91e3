import { Signaling, gatheredOffer, show, staffLogin } from "./signaling.js";
import { apply, errorText, has, label, onLanguage, register, switcher, t } from "./i18n.js";
import STAFF from "./lang/staff.js";
import SUPERVISOR from "./lang/supervisor.js";

register(STAFF, SUPERVISOR);

const $ = (id) => document.getElementById(id);
const pct = (v) => (v === null || v === undefined ? "-" : `${Math.round(v * 100)}%`);
const secs = (v) => (v === null || v === undefined ? "-" : t("seconds", { n: Math.round(v) }));
const language = (code) => (has(`code.lang.${code}`) ? label(`lang.${code}`) : code);
window.vteller = { board: null, monitor: null };
// Listening to a call (listen-only): four receive-only m-lines, the server's order.
const monitor = { pc: null, callId: null, teller: null };

async function listen(sig, callId, teller) {
  stopListening(sig);
  const pc = new RTCPeerConnection({ iceServers: sig.welcome?.ice_servers || [], bundlePolicy: "max-bundle" });
  Object.assign(monitor, { pc, callId, teller });
  window.vteller.monitor = pc;
  const [ca, ta, cv, tv] = ["audio", "audio", "video", "video"].map((kind) => pc.addTransceiver(kind, { direction: "recvonly" }));
  $("mon-audio").srcObject = new MediaStream([ca.receiver.track, ta.receiver.track]);
  $("mon-customer").srcObject = new MediaStream([cv.receiver.track]);
  $("mon-teller").srcObject = new MediaStream([tv.receiver.track]);
  renderMonitor();
  sig.send({ type: "monitor.start", call_id: callId, sdp: await gatheredOffer(pc) });
}

function stopListening(sig, tell = true) {
  if (monitor.callId && tell) sig.send({ type: "monitor.stop", call_id: monitor.callId });
  monitor.pc?.close();
  Object.assign(monitor, { pc: null, callId: null, teller: null });
  window.vteller.monitor = null;
  renderMonitor();
}

function renderMonitor() {
  show($("monitor"), !!monitor.callId);
  if (monitor.callId) $("monitor-title").textContent = t("listening_to", { teller: monitor.teller });
}
const confirming = new Map();  // username -> the force action awaiting its second click

function render(board, sig) {
  window.vteller.board = board;
  for (const c of ["green", "priority", "vip", "standard"]) $(`q-${c}`).textContent = board.queue[c];
  $("q-longest").textContent = secs(board.longest_wait_s);
  const s = board.service;
  $("s-sl").textContent = pct(s.service_level); $("s-asa").textContent = secs(s.asa_s);
  $("s-aht").textContent = secs(s.aht_s) + (s.aht_measured === false ? t("aht_default") : "");
  $("s-abandon").textContent = pct(s.abandon_rate);
  const f = board.staffing;
  if (f && f.interval_s) {
    $("staffing-basis").textContent = t("staffing_basis", { minutes: Math.round(f.interval_s / 60),
      offered: f.offered, aht: f.aht_s, default: f.aht_measured ? "" : t("default_marker") });
    $("f-traffic").textContent = t("erlangs", { n: f.traffic_erlangs });
    $("f-needed").textContent = f.tellers_needed; $("f-scheduled").textContent = f.scheduled_needed;
    $("f-sl").textContent = pct(f.expected_service_level); $("f-staffed").textContent = f.staffed_now;
    $("staffing-row").dataset.short = f.staffed_now < f.tellers_needed ? "yes" : "no";
  }
  $("s-answer").textContent = pct(s.answer_rate); $("s-count").textContent = s.answered;
  const unservable = (board.waiting || []).filter((w) => !w.staffed);
  show($("unservable"), unservable.length > 0);
  $("unservable").textContent = unservable.length === 1
    ? t("unservable_one") : t("unservable_many", { n: unservable.length });
  const available = board.tellers.filter((tl) => tl.state === "available");
  $("waiting").replaceChildren(...(board.waiting || []).map((w) => {
    const tr = document.createElement("tr");
    tr.dataset.callId = w.call_id;
    if (!w.staffed) tr.className = "alert";  // nobody staffed can take this customer
    const cls = label(w.class) + (w.booked_teller ? t("booked_with", { teller: w.booked_teller }) : "");
    for (const text of [cls, secs(w.waited_s), label(w.business_type), language(w.language), String(w.staffed)]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    const td = document.createElement("td");
    const pick = document.createElement("select");
    pick.setAttribute("aria-label", t("teller_to_assign")); pick.translate = false;  // people's names
    pick.append(...available.map((tl) => new Option(tl.display_name, tl.username)));
    const b = document.createElement("button");
    b.className = "secondary small"; b.textContent = t("assign"); b.disabled = !available.length;
    b.onclick = () => sig.send({ type: "supervisor.assign", call_id: w.call_id, username: pick.value });
    td.append(pick, b); tr.append(td);
    return tr;
  }));
  $("nodes").replaceChildren(...(board.nodes || []).map((n) => {
    const tr = document.createElement("tr");
    if (n.expired) tr.className = "alert";  // its lease ran out: a survivor seals its calls
    const role = n.expired ? t("not_answering", { role: label(n.role) }) : label(n.role);
    for (const text of [`${n.host} (${n.node.split(":")[1]})`, role, String(n.in_call),
                        String(n.waiting), String(n.connections)]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    tr.cells[0].translate = false;  // a host name
    return tr;
  }));
  const body = $("tellers");
  body.replaceChildren(...board.tellers.map((tl) => {
    const tr = document.createElement("tr");
    tr.dataset.username = tl.username;
    const cells = [tl.display_name, label(tl.state) + (tl.reason ? ` (${label(tl.reason)})` : ""), secs(tl.in_state_s), tl.serving || ""];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    tr.cells[0].translate = false; tr.cells[3].translate = false;  // people's names
    const actions = document.createElement("td");
    if (tl.call_id) {  // in a call: listen to it (listen-only; audited)
      const b = document.createElement("button");
      const listening = monitor.callId === tl.call_id;
      b.className = "secondary small"; b.dataset.action = "listen";
      b.textContent = listening ? t("stop_listening") : t("listen");
      b.onclick = () => (listening ? stopListening(sig) : listen(sig, tl.call_id, tl.display_name));
      actions.append(b);
    }
    for (const status of ["break", "offline"]) {
      const b = document.createElement("button");
      const force = status === "break" ? t("force_break") : t("force_offline");
      b.className = "secondary small"; b.dataset.status = status;
      // the board is redrawn every second: a pending confirmation is kept per teller
      const pending = confirming.get(tl.username) === status;
      b.textContent = pending ? t(status === "break" ? "confirm_break" : "confirm_offline", { name: tl.display_name }) : force;
      if (pending) b.className = "danger small";
      b.onclick = () => {
        if (confirming.get(tl.username) !== status) { confirming.set(tl.username, status); render(board, sig); return; }
        confirming.delete(tl.username);
        sig.send({ type: "supervisor.set_teller", username: tl.username, status, reason: "supervisor" });
      };
      actions.append(b);
    }
    tr.append(actions);
    return tr;
  }));
}

async function loadReviews() {
  const r = await fetch("/api/reports/reviews?hours=24");
  if (!r.ok) return;
  const report = await r.json();
  const table = (id, rows, values) => $(id).replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    for (const v of values(row)) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    return tr;
  }));
  table("reviews", report.rows, (row) => [label(row.business_type), row.teller, row.approve, row.reject,
    row.incomplete, row.reschedule, pct(row.pass_rate)]);
  table("outcomes", report.outcomes, (row) => [label(row.business_type), ...["successful", "unsuccessful",
    "dropped", "missed", "rescheduled", "transferred", "open", "total"].map((k) => row[k] || 0)]);
  table("surveys", report.surveys, (row) => [label(row.business_type), row.responses, row.average.toFixed(2), row.low]);
}

function connect() {
  loadReviews(); setInterval(loadReviews, 10000);
  const sig = new Signaling(() => ({}));
  window.vteller.sig = sig;
  sig.addEventListener("welcome", (ev) => {
    show($("login"), false); show($("board"), true); $("me").textContent = ev.detail.display_name;
  });
  sig.addEventListener("dashboard", (ev) => render(ev.detail, sig));
  sig.addEventListener("monitor.answer", (ev) => {
    if (monitor.pc && ev.detail.call_id === monitor.callId) monitor.pc.setRemoteDescription({ type: "answer", sdp: ev.detail.sdp });
  });
  sig.addEventListener("monitor.ended", (ev) => { if (ev.detail.call_id === monitor.callId) stopListening(sig, false); });
  $("monitor-stop").onclick = () => stopListening(sig);
  sig.addEventListener("error", (ev) => { $("error").textContent = errorText(ev.detail); });
  sig.connect();
  $("logout").onclick = async () => { sig.close(); await fetch("/api/logout", { method: "POST" }); location.reload(); };
}

apply();
switcher($("lang"));
onLanguage(() => { if (window.vteller.board && window.vteller.sig) render(window.vteller.board, window.vteller.sig); loadReviews(); renderMonitor(); });
staffLogin(connect);
