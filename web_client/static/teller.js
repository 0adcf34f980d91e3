import { Signaling, sendOffer, show, staffLogin } from "./signaling.js";
import { apply, errorText, fill, formatDay, formatTime, has, i18n, label, onLanguage, register, switcher, t } from "./i18n.js";
import CUSTOMER from "./lang/customer.js";
import STAFF from "./lang/staff.js";
import TELLER from "./lang/teller.js";

register(CUSTOMER, STAFF, TELLER);  // the customer's words name the liveness actions

const $ = (id) => document.getElementById(id);
const state = { pc: null, local: null, offer: null, tellerState: "offline" };
window.vteller = state;

// Each error appears beside the tools of the message that caused it, until the next
// message of that area is sent.
const ERROR_AREAS = [["offer.", "offer-error"], ["identity.", "identity-error"],
  ["assist.", "assist-error"], ["nav.", "nav-error"], ["review.", "review-error"],
  ["otp.", "otp-error"], ["script.", "script-error"], ["id.", "iddoc-error"],
  ["call.transfer", "transfer-error"], ["wrap_up.", "wrapup-error"]];
const areaOf = (type) => (ERROR_AREAS.find(([prefix]) => (type || "").startsWith(prefix)) || [null, "error"])[1];
function showError(type, text) { $(areaOf(type)).textContent = text; }
const text = (prefix, code) => t(`${prefix}.${code}`);
// A business type's title: the bank's own (configured) in English, the catalogue's
// words for its code in another language where it has them.
const named = (code, title) => (i18n.lang !== "en" && has(`code.${code}`) ? label(code) : title);
const businessTitle = (b) => named(b.id, b.title);
const nameOf = (value) => { const el = document.createElement("strong"); el.textContent = value; return el; };

function renderLastCall() {
  const c = state.lastCall;
  $("last-call").textContent = !c ? "" : t("last_call", { reason: label(c.reason) }) +
    (c.disposition ? t("disposition_recorded", { label: label(c.disposition) }) : "");
}

function renderOffer() {
  const o = state.offer;
  if (!o) return;
  const business = document.createElement("span"); business.id = "offer-business"; business.textContent = label(o.business_type);
  const language = nameOf(has(`code.lang.${o.language}`) ? label(`lang.${o.language}`) : o.language); language.id = "offer-language";
  const name = nameOf(o.customer.display_name); name.id = "offer-name"; name.translate = false;
  fill($("offer-line"), "offer_line", { name, business, language });
  show($("offer-appointment"), !!o.appointment_at);
  if (o.appointment_at) $("offer-appointment").textContent = t("offer_appointment", { time: formatTime(o.appointment_at) });
}

// The ring: a soft two-tone chime every 2 s while an offer waits (Web Audio, no file).
const ring = {
  timer: null, ctx: null,
  chime() {
    this.ctx = this.ctx || new AudioContext();
    const now = this.ctx.currentTime;
    for (const [i, freq] of [[0, 880], [1, 660]]) {
      const osc = this.ctx.createOscillator(), gain = this.ctx.createGain();
      osc.frequency.value = freq; gain.gain.setValueAtTime(0.0001, now + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.2, now + i * 0.25 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.25 + 0.22);
      osc.connect(gain).connect(this.ctx.destination); osc.start(now + i * 0.25); osc.stop(now + i * 0.25 + 0.25);
    }
  },
  start() { this.stop(); try { this.chime(); } catch { /* no audio device */ } this.timer = setInterval(() => { try { this.chime(); } catch { /* ignore */ } }, 2000); document.body.dataset.ringing = "true"; },
  stop() { clearInterval(this.timer); this.timer = null; delete document.body.dataset.ringing; },
};

// Countdowns: the offer's ring, wrap-up, and the call's running time.
const timers = { offerUntil: null, wrapUntil: null, callSince: null };
function tick() {
  const now = Date.now();
  if (timers.offerUntil) $("offer-countdown").textContent = t("seconds_left", { n: Math.max(0, Math.ceil((timers.offerUntil - now) / 1000)) });
  if (timers.wrapUntil && state.tellerState === "wrap_up") {
    $("teller-state").textContent = t("available_in", { state: label("wrap_up"), n: Math.max(0, Math.ceil((timers.wrapUntil - now) / 1000)) });
  }
  if (timers.callSince) {
    const s = Math.floor((now - timers.callSince) / 1000);
    $("call-timer").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }
}
setInterval(tick, 1000);

function setTellerState(s, reason, wrapUpS) {
  state.tellerState = s;
  timers.wrapUntil = s === "wrap_up" && wrapUpS != null ? Date.now() + wrapUpS * 1000 : null;
  const shown = reason ? t("with_reason", { state: label(s), reason: label(reason) }) : label(s);
  $("teller-state").textContent = wrapUpS != null ? t("available_in", { state: shown, n: wrapUpS }) : shown;
  show($("wrapup-extend"), s === "wrap_up");
  $("teller-state").dataset.state = s;
  show($("wrapup-done"), s === "wrap_up");
  show($("wrapup-form"), s === "wrap_up" && !state.dispositionRecorded);
  const idle = ["offline", "available", "break"].includes(s);
  show($("available"), idle && s !== "available");
  show($("break"), idle && s !== "break");
}

async function negotiate(sig) {
  if (!state.local) {
    state.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    $("self").srcObject = state.local;
  }
  state.pc?.close();
  const pc = new RTCPeerConnection({ iceServers: sig.welcome?.ice_servers || [] });
  state.pc = pc;
  pc.addTransceiver(state.local.getAudioTracks()[0], { direction: "sendrecv", streams: [state.local] });
  pc.addTransceiver(state.local.getVideoTracks()[0], { direction: "sendrecv", streams: [state.local] });
  const screen = pc.addTransceiver("video", { direction: "recvonly" });  // customer's screen, only with consent
  const remote = new MediaStream();
  $("remote").srcObject = remote;
  $("screen").srcObject = new MediaStream([screen.receiver.track]);
  state.screenReceiver = screen.receiver;
  pc.ontrack = (ev) => { if (ev.transceiver !== screen) remote.addTrack(ev.track); };
  await sendOffer(pc, sig);
}

function renderIdentity(s) {
  const v = $("id-verdict");
  show($("id-scale"), true);
  v.textContent = text("verdict", s.verdict) + (s.judged ? t("judged_by_teller", { judged: s.judged }) : "") + (s.verdict_s != null ? t("verdict_in", { s: s.verdict_s.toFixed(1) }) : "");
  v.dataset.verdict = s.verdict;
  const known = (prefix, code) => (code && has(`${prefix}.${code}`) ? text(prefix, code) : "");
  $("id-condition").textContent = known("condition", s.detail) || known("condition", s.condition);
  $("id-presence").textContent = known("presence", s.presence);
  $("id-distance").textContent = s.distance == null ? "-" : s.distance.toFixed(3);
  const part = (value) => { const el = document.createElement("span"); el.textContent = value; return el; };
  fill($("id-scale"), "distance_scale", { match: part(s.match_threshold), mismatch: part(s.mismatch_threshold), samples: part(s.samples) });
  show($("id-borderline"), s.borderline && !s.judged);
  const svg = $("id-trend");
  const y = (d) => 40 - Math.min(d, 1) * 40;
  const line = (d, cls) => {
    const l = document.createElementNS("http://www.w3.org/2000/svg", "line");
    l.setAttribute("x1", 0); l.setAttribute("x2", 200); l.setAttribute("y1", y(d)); l.setAttribute("y2", y(d));
    l.setAttribute("class", cls); return l;
  };
  const poly = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  poly.setAttribute("points", s.trend.map((d, i) => `${(i * 200) / Math.max(1, s.trend.length - 1)},${y(d)}`).join(" "));
  poly.setAttribute("class", "trend-line");
  svg.replaceChildren(line(s.match_threshold, "trend-match"), line(s.mismatch_threshold, "trend-mismatch"), poly);
  const l = s.liveness;
  $("id-liveness-state").textContent = l ? label(l.state) : t("not_started");
  $("id-liveness-state").dataset.state = l ? l.state : "idle";
  $("id-liveness-reason").textContent = l && l.reason ? `(${label(l.reason)})` : (l && l.phase === "calibrate" && l.state === "running" ? t("measuring_rest") : "");
  $("id-steps").replaceChildren(...(l ? l.steps : []).map((st) => {
    const li = document.createElement("li");
    li.textContent = `${has(st.action) ? t(st.action) : st.prompt}: ${label(st.state)}`; li.dataset.state = st.state; return li;
  }));
  $("id-liveness").disabled = !!(l && l.state === "running");
  const sp = s.spoken;
  $("spoken-state").textContent = sp ? label(sp.state) : t("not_started");
  show($("spoken-run"), !!(sp && sp.state === "running"));
  if (sp) {
    $("spoken-phrase").textContent = sp.phrase;
    $("spoken-questions").replaceChildren(...sp.questions.map((q) => {
      const li = document.createElement("li"); li.textContent = q; return li;
    }));
  }
}

// The views the server's messages draw; the last message of each is kept, so a switch
// of language draws them again (a call's views are forgotten when it ends).
const views = new Map();
const drawers = {};
const CALL_VIEWS = ["monitor.state", "call.peer", "assist.state", "call.context", "identity.status", "review.recorded",
  "otp.state", "script.state", "id.state", "location.state"];
function redraw() { for (const [type, detail] of views) drawers[type]({ detail }); }

function connect() {
  const sig = new Signaling(() => ({}));
  const view = (type, draw) => {
    drawers[type] = draw;
    sig.addEventListener(type, (ev) => { views.set(type, ev.detail); draw(ev); });
  };
  sig.addEventListener("welcome", async (ev) => {
    show($("login"), false); show($("console"), true);
    $("me").textContent = ev.detail.display_name;
    const st = ev.detail.state;
    views.set("teller.state", { state: st.teller_state, reason: st.reason });
    setTellerState(st.teller_state, st.reason);
    if (st.call && ["connecting", "active"].includes(st.call.state) && (!state.pc || state.pc.connectionState !== "connected")) {
      $("customer-name").textContent = st.call.peer?.display_name || "";
      show($("call"), true); await negotiate(sig);
    }
  });
  view("teller.state", (ev) => setTellerState(ev.detail.state, ev.detail.reason, ev.detail.wrap_up_s));
  sig.addEventListener("offer.incoming", (ev) => {
    state.offer = ev.detail;
    ring.start();
    renderOffer();
    timers.offerUntil = Date.now() + ev.detail.ring_timeout_s * 1000; tick();
    $("offer-error").textContent = "";
    show($("offer"), true);
  });
  sig.addEventListener("offer.revoked", () => { ring.stop(); state.offer = null; timers.offerUntil = null; show($("offer"), false); });
  sig.addEventListener("call.started", async (ev) => {
    ring.stop();
    show($("offer"), false); timers.offerUntil = null;
    timers.callSince = Date.now(); tick();
    for (const [, id] of ERROR_AREAS) $(id).textContent = "";
    $("customer-name").textContent = ev.detail.peer.display_name;
    show($("call"), true);
    await negotiate(sig);
  });
  sig.addEventListener("webrtc.answer", (ev) => state.pc?.setRemoteDescription({ type: "answer", sdp: ev.detail.sdp }));
  view("call.peer", (ev) => {
    $("peer-status").textContent = ev.detail.connection === "reconnecting" ? t("peer_dropped") : (ev.detail.audio ? "" : t("peer_muted"));
  });
  sig.addEventListener("call.ended", (ev) => {
    state.pc?.close(); state.pc = null; show($("call"), false); timers.callSince = null;
    state.lastCall = { reason: ev.detail.reason, disposition: null }; renderLastCall();
  });
  sig.addEventListener("error", (ev) => showError(ev.detail.re, errorText(ev.detail)));
  view("monitor.state", (ev) => {  // a supervisor listening (the bank's policy: the teller is told)
    const names = ev.detail.listeners;
    show($("monitored"), names.length > 0);
    $("monitored").textContent = names.length ? t("monitored", { name: names.join(", ") }) : "";
  });
  view("assist.state", (ev) => {
    const s = ev.detail.state;
    $("assist-state").textContent = text("assist", s); $("assist-state").dataset.state = s;
    show($("screen"), s === "active");
    show($("assist-stop"), ["requested", "granted", "active"].includes(s));
    show($("assist-request"), !["requested", "granted", "active"].includes(s));
  });
  view("call.context", (ev) => renderContext(ev.detail));
  function renderContext(c) {
    state.context = c;
    $("business-title").textContent = businessTitle(c.business_type);
    $("evidence-required").textContent = c.business_type.required_evidence.map(label).join(", ") || t("none");
    $("evidence-have").textContent = c.evidence.map(label).join(", ") || t("none");
    const destination = $("nav-destination").value;
    $("nav-destination").replaceChildren(...c.destinations.map((d) => new Option(named(`dest.${d.id}`, d.title), d.id)));
    if (destination) $("nav-destination").value = destination;
    const reason = $("reason-code").value;
    $("reason-code").replaceChildren(new Option(t("reason_none"), ""), ...c.reason_codes.map((r) => new Option(label(r), r)));
    $("reason-code").value = reason;
    if ($("disposition").dataset.call !== c.call_id) {  // a new call: a new disposition
      $("disposition").dataset.call = c.call_id;
      $("disposition").replaceChildren(...(c.dispositions || []).map((d) => new Option(label(d), d)));
      $("wrapup-notes").value = "";
      state.dispositionRecorded = false;
    }
    $("decision-result").textContent = "";
    $("customer-history").textContent = c.history && c.history.length
      ? t("earlier_calls", { list: c.history.map((h) => `${formatDay(h.at)} ${label(h.business_type)}: ${h.outcome ? label(h.outcome) : t("not_over")}${h.reason ? ` (${label(h.reason)})` : ""}`).join("; ") })
      : t("first_call");
    if ($("transfer-type").dataset.call !== c.call_id) {  // once per call: keep the teller's choice
      $("transfer-type").dataset.call = c.call_id;
      $("transfer-type").replaceChildren(...(c.transfer_types || []).map((b) => new Option(businessTitle(b), b.id)));
      $("transfer-type").value = c.business_type.id;
      $("transfer-teller").value = ""; $("transfer-note").value = "";
    }
  }
  view("identity.status", (ev) => renderIdentity(ev.detail));
  view("review.recorded", (ev) => {
    $("decision-result").textContent = t("decision_recorded", { decision: label(ev.detail.decision) }) +
      (ev.detail.pending_audit ? t("pending_audit") : "");
  });
  view("otp.state", (ev) => {
    const m = ev.detail;
    $("otp-state").dataset.state = m.state;
    $("otp-state").textContent = text("otp", m.state) + (m.state === "wrong" ? t("attempts_left", { n: m.attempts_left }) : "");
  });
  const docs = {};
  view("script.state", (ev) => {
    show($("script-panel"), true);
    $("script-steps").replaceChildren(...ev.detail.steps.map((s) => {
      const li = document.createElement("li"); li.dataset.step = s.id; li.dataset.state = s.state;
      const title = document.createElement("strong"); title.textContent = s.title;
      const statement = document.createElement("p"); statement.textContent = s.text;
      const st = document.createElement("span"); st.className = "state"; st.textContent = text("script", s.state);
      li.append(title, " ", st, statement);
      if (s.state !== "confirmed") {
        const b = document.createElement("button"); b.className = "small secondary";
        b.textContent = s.state === "open" ? t("script_read") : t("script_again");
        b.onclick = () => send({ type: "script.read", step: s.id });
        li.append(b);
      }
      return li;
    }));
  });
  sig.addEventListener("call.ended", () => {
    for (const type of CALL_VIEWS) views.delete(type);
    show($("monitored"), false);
    show($("script-panel"), false);
    for (const side of ["front", "back"]) delete docs[side];
    $("id-doc-state").textContent = ""; $("otp-state").textContent = "";
    $("location-state").textContent = text("place", "not_asked");
  });
  view("id.state", (ev) => {
    const m = ev.detail;
    docs[m.side] = m.side === "back" ? t("doc_back") : m.faces === 0
      ? t("doc_no_face")
      : m.distance_reference === null && m.distance_live === null
      ? t("doc_unclear")
      : t("doc_front", { ref: m.distance_reference ?? "-", live: m.distance_live ?? "-", result: m.matched ? t("doc_match") : t("doc_no_match") });
    $("id-doc-state").dataset.matched = m.matched ?? "";
    $("id-doc-state").textContent = [docs.front, docs.back].filter(Boolean).join("; ");
  });
  view("location.state", (ev) => {
    const m = ev.detail;
    $("location-state").dataset.state = m.state;
    $("location-state").textContent = text("place", m.state) + (m.region ? ` (${m.region})` : "") +
      (m.required ? t("place_required") : "");
  });
  sig.connect();
  // what the teller does: clears the error shown beside that tool, then sends
  const send = (msg) => { $(areaOf(msg.type)).textContent = ""; sig.send(msg); };

  $("id-verify").onclick = () => send({ type: "identity.verify" });
  $("id-liveness").onclick = () => send({ type: "identity.liveness" });
  const judge = (accept) => {
    const notes = $("id-notes").value.trim();
    if (notes.length < 3) { showError("identity.judge", t("write_compared")); return; }
    send({ type: "identity.judge", accept, notes });
  };
  $("spoken-start").onclick = () => send({ type: "identity.spoken_check", reason: $("spoken-reason").value, notes: $("spoken-notes").value.trim() });
  const attest = (passed) => {
    const notes = $("spoken-attest-notes").value.trim();
    if (notes.length < 3) { showError("identity.attest", t("write_attest")); return; }
    send({ type: "identity.attest", passed, notes });
  };
  $("spoken-pass").onclick = () => attest(true);
  $("spoken-fail").onclick = () => attest(false);
  $("id-accept").onclick = () => judge(true);
  $("id-reject").onclick = () => judge(false);
  $("assist-request").onclick = () => send({ type: "assist.request", purpose: $("assist-purpose").value || t("assist_default_purpose") });
  $("assist-stop").onclick = () => send({ type: "assist.stop" });
  $("nav-push").onclick = () => send({ type: "nav.push", destination: $("nav-destination").value });
  $("otp-request").onclick = () => send({ type: "otp.request" });
  $("id-front").onclick = () => send({ type: "id.capture", side: "front" });
  $("id-back").onclick = () => send({ type: "id.capture", side: "back" });
  $("decide").onclick = () => send({ type: "review.decide", decision: $("decision").value,
    reason_code: $("reason-code").value || null, notes: $("decision-notes").value });

  $("available").onclick = () => send({ type: "teller.status", status: "available" });
  $("wrapup-done").onclick = () => send({ type: "teller.status", status: "available" });
  $("wrapup-extend").onclick = () => send({ type: "teller.wrap_up_extend", seconds: 60 });
  $("wrapup-record").onclick = () => send({ type: "wrap_up.record", disposition: $("disposition").value,
    notes: $("wrapup-notes").value });
  sig.addEventListener("wrap_up.recorded", (ev) => {
    state.dispositionRecorded = true;
    show($("wrapup-form"), false);
    if (state.lastCall) { state.lastCall.disposition = ev.detail.disposition; renderLastCall(); }
  });
  $("break").onclick = () => send({ type: "teller.status", status: "break", reason: "personal" });
  $("accept").onclick = () => { ring.stop(); if (state.offer) send({ type: "offer.accept", call_id: state.offer.call_id }); };
  $("reject").onclick = () => { ring.stop(); if (state.offer) send({ type: "offer.reject", call_id: state.offer.call_id }); };
  $("hangup").onclick = () => send({ type: "call.hangup" });
  const toggle = (kind) => {  // the teller's own microphone or camera, told to the customer
    if (!state.local) return;
    const track = kind === "audio" ? state.local.getAudioTracks()[0] : state.local.getVideoTracks()[0];
    track.enabled = !track.enabled;
    const button = $(kind === "audio" ? "teller-mute" : "teller-camera");
    button.setAttribute("aria-pressed", String(!track.enabled));
    button.dataset.i18n = kind === "audio" ? (track.enabled ? "mute" : "unmute") : (track.enabled ? "camera_off" : "camera_on");
    button.textContent = t(button.dataset.i18n);
    if (state.pc) sig.send({ type: "call.media_state", audio: state.local.getAudioTracks()[0].enabled,
      video: state.local.getVideoTracks()[0].enabled });
  };
  $("transfer").onclick = () => send({ type: "call.transfer",
    business_type: $("transfer-type").value || null, teller: $("transfer-teller").value.trim() || null,
    note: $("transfer-note").value.trim() });
  $("teller-mute").onclick = () => toggle("audio");
  $("teller-camera").onclick = () => toggle("video");
  // keyboard shortcuts for an eight-hour day (Alt+letter: never typed into a field)
  document.addEventListener("keydown", (ev) => {
    if (!ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const key = ev.key.toLowerCase();
    const target = { a: "accept", h: "hangup", m: "teller-mute" }[key];
    if (target && !$(target).closest("[hidden]")) { ev.preventDefault(); $(target).click(); }
  });
  $("logout").onclick = async () => { sig.close(); await fetch("/api/logout", { method: "POST" }); location.reload(); };
}

// the language: chosen in the header, the page redrawn in it at once
apply();
switcher($("lang"));
onLanguage(() => {
  redraw();
  renderOffer();
  renderLastCall();
  for (const id of ["disposition", "reason-code"]) for (const o of $(id).options) if (o.value) o.textContent = label(o.value);
  for (const o of $("transfer-type").options) {
    const b = (state.context?.transfer_types || []).find((x) => x.id === o.value);
    if (b) o.textContent = businessTitle(b);
  }
});
staffLogin(connect);
