import { Signaling, show, staffLogin } from "./signaling.js";

const $ = (id) => document.getElementById(id);
const pct = (v) => (v === null || v === undefined ? "-" : `${Math.round(v * 100)}%`);
const secs = (v) => (v === null || v === undefined ? "-" : `${Math.round(v)} s`);
window.vteller = { board: null };
const confirming = new Map();  // username -> the force action awaiting its second click

function render(board, sig) {
  window.vteller.board = board;
  for (const c of ["green", "priority", "vip", "standard"]) $(`q-${c}`).textContent = board.queue[c];
  $("q-longest").textContent = secs(board.longest_wait_s);
  const s = board.service;
  $("s-sl").textContent = pct(s.service_level); $("s-asa").textContent = secs(s.asa_s);
  $("s-aht").textContent = secs(s.aht_s) + (s.aht_measured === false ? " (default, none measured yet)" : "");
  $("s-abandon").textContent = pct(s.abandon_rate);
  const f = board.staffing;
  if (f && f.interval_s) {
    $("staffing-basis").textContent = `Next ${Math.round(f.interval_s / 60)} minutes taken to be like the last: ` +
      `${f.offered} calls offered, ${f.aht_s} s handle time${f.aht_measured ? "" : " (default)"}.`;
    $("f-traffic").textContent = `${f.traffic_erlangs} Erlangs`;
    $("f-needed").textContent = f.tellers_needed; $("f-scheduled").textContent = f.scheduled_needed;
    $("f-sl").textContent = pct(f.expected_service_level); $("f-staffed").textContent = f.staffed_now;
    $("staffing-row").dataset.short = f.staffed_now < f.tellers_needed ? "yes" : "no";
  }
  $("s-answer").textContent = pct(s.answer_rate); $("s-count").textContent = s.answered;
  const unservable = (board.waiting || []).filter((w) => !w.staffed);
  show($("unservable"), unservable.length > 0);
  $("unservable").textContent = unservable.length === 1
    ? "1 customer is waiting with nobody logged in who can serve them: assign a teller below."
    : `${unservable.length} customers are waiting with nobody logged in who can serve them: assign a teller below.`;
  const available = board.tellers.filter((t) => t.state === "available");
  $("waiting").replaceChildren(...(board.waiting || []).map((w) => {
    const tr = document.createElement("tr");
    tr.dataset.callId = w.call_id;
    if (!w.staffed) tr.className = "alert";  // nobody staffed can take this customer
    for (const text of [w.class, `${w.waited_s} s`, w.business_type, w.language, String(w.staffed)]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    const td = document.createElement("td");
    const pick = document.createElement("select");
    pick.setAttribute("aria-label", "Teller to assign");
    pick.append(...available.map((t) => { const o = document.createElement("option"); o.value = t.username; o.textContent = t.display_name; return o; }));
    const b = document.createElement("button");
    b.className = "secondary small"; b.textContent = "Assign"; b.disabled = !available.length;
    b.onclick = () => sig.send({ type: "supervisor.assign", call_id: w.call_id, username: pick.value });
    td.append(pick, b); tr.append(td);
    return tr;
  }));
  $("nodes").replaceChildren(...(board.nodes || []).map((n) => {
    const tr = document.createElement("tr");
    if (n.expired) tr.className = "alert";  // its lease ran out: a survivor seals its calls
    const role = n.expired ? `${n.role}, not answering` : n.role;
    for (const text of [`${n.host} (${n.node.split(":")[1]})`, role, String(n.in_call),
                        String(n.waiting), String(n.connections)]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    return tr;
  }));
  const body = $("tellers");
  body.replaceChildren(...board.tellers.map((t) => {
    const tr = document.createElement("tr");
    tr.dataset.username = t.username;
    const cells = [t.display_name, t.state + (t.reason ? ` (${t.reason})` : ""), `${t.in_state_s} s`, t.serving || ""];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    const actions = document.createElement("td");
    for (const status of ["break", "offline"]) {
      const b = document.createElement("button");
      const label = status === "break" ? "Force break" : "Force offline";
      b.className = "secondary small"; b.dataset.status = status;
      // the board is redrawn every second: a pending confirmation is kept per teller
      const pending = confirming.get(t.username) === status;
      b.textContent = pending ? `Confirm: ${label.toLowerCase()} for ${t.display_name}?` : label;
      if (pending) b.className = "danger small";
      b.onclick = () => {
        if (confirming.get(t.username) !== status) { confirming.set(t.username, status); render(board, sig); return; }
        confirming.delete(t.username);
        sig.send({ type: "supervisor.set_teller", username: t.username, status, reason: "supervisor" });
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
  table("reviews", report.rows, (row) => [row.business_type, row.teller, row.approve, row.reject,
    row.incomplete, row.reschedule, pct(row.pass_rate)]);
  table("outcomes", report.outcomes, (row) => [row.business_type, ...["successful", "unsuccessful",
    "dropped", "missed", "rescheduled", "transferred", "open", "total"].map((k) => row[k] || 0)]);
  table("surveys", report.surveys, (row) => [row.business_type, row.responses, row.average.toFixed(2), row.low]);
}

function connect() {
  loadReviews(); setInterval(loadReviews, 10000);
  const sig = new Signaling(() => ({}));
  sig.addEventListener("welcome", (ev) => {
    show($("login"), false); show($("board"), true); $("me").textContent = ev.detail.display_name;
  });
  sig.addEventListener("dashboard", (ev) => render(ev.detail, sig));
  sig.addEventListener("error", (ev) => { $("error").textContent = `${ev.detail.code}: ${ev.detail.message}`; });
  sig.connect();
  $("logout").onclick = async () => { sig.close(); await fetch("/api/logout", { method: "POST" }); location.reload(); };
}

staffLogin(connect);
