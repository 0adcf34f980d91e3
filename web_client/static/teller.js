import { Signaling, sendOffer, show, staffLogin } from "./signaling.js";

const $ = (id) => document.getElementById(id);
const state = { pc: null, local: null, offer: null, tellerState: "offline" };
window.vteller = state;

// Words for the codes the server sends (unknown codes are shown with spaces).
const LABELS = {
  general: "General question", card_issuance_review: "Card issuance review",
  password_reset: "Card password reset", info_change: "Change of personal details",
  video_ident: "Video identification",
  offline: "offline", available: "available", offered: "offered", busy: "in a call",
  wrap_up: "wrap-up", break: "on break",
  missed_offer: "missed an offer", personal: "personal", supervisor: "set by a supervisor",
  hangup_teller: "you hung up", hangup_customer: "the customer hung up",
  customer_disconnected: "the customer's connection was lost",
  teller_disconnected: "your connection was lost", server_shutdown: "the server restarted",
  resolved: "Resolved", follow_up: "Follow-up needed", callback_requested: "Callback requested",
  complaint: "Complaint", referred: "Referred to a branch", technical_problem: "Technical problem",
};
const label = (code) => LABELS[code] || String(code).replaceAll("_", " ");

// Each error appears beside the tools of the message that caused it, until the next
// message of that area is sent.
const ERROR_AREAS = [["offer.", "offer-error"], ["identity.", "identity-error"],
  ["assist.", "assist-error"], ["nav.", "nav-error"], ["review.", "review-error"],
  ["otp.", "otp-error"], ["script.", "script-error"], ["id.", "iddoc-error"],
  ["call.transfer", "transfer-error"], ["wrap_up.", "wrapup-error"]];
const areaOf = (type) => (ERROR_AREAS.find(([prefix]) => (type || "").startsWith(prefix)) || [null, "error"])[1];
function showError(type, text) { $(areaOf(type)).textContent = text; }

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
  if (timers.offerUntil) $("offer-countdown").textContent = `${Math.max(0, Math.ceil((timers.offerUntil - now) / 1000))} s left`;
  if (timers.wrapUntil && state.tellerState === "wrap_up") {
    $("teller-state").textContent = `${label("wrap_up")} (available in ${Math.max(0, Math.ceil((timers.wrapUntil - now) / 1000))} s)`;
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
  $("teller-state").textContent = label(s) + (reason ? ` (${label(reason)})` : "") + (wrapUpS != null ? ` (available in ${wrapUpS} s)` : "");
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

const VERDICTS = {
  idle: "not checked", verifying: "verifying...", verified: "verified", mismatch: "MISMATCH",
  needs_review: "borderline: teller review", no_face: "no face in view", several_faces: "several faces in view",
  poor_quality: "picture too poor", no_reference: "no reference photo on file",
};
const CONDITIONS = { no_face: "No face in view.", several_faces: "More than one face in view.",
  poor_quality: "Picture too poor.", face_too_small: "Face too small: ask the customer to come closer.",
  poorly_lit: "Face poorly lit: ask the customer to face the light.", too_blurry: "Picture blurry: ask the customer to hold still." };
const PRESENCE = { left_frame: "The customer left the picture.", several_faces: "Someone else is in the picture.",
  different_person: "A DIFFERENT PERSON is in front of the camera." };

function renderIdentity(s) {
  const v = $("id-verdict");
  v.textContent = VERDICTS[s.verdict] + (s.judged ? ` (teller ${s.judged})` : "") + (s.verdict_s != null ? ` in ${s.verdict_s.toFixed(1)} s` : "");
  v.dataset.verdict = s.verdict;
  $("id-condition").textContent = CONDITIONS[s.detail] || CONDITIONS[s.condition] || "";
  $("id-presence").textContent = PRESENCE[s.presence] || "";
  $("id-distance").textContent = s.distance == null ? "-" : s.distance.toFixed(3);
  $("id-match").textContent = s.match_threshold; $("id-mismatch").textContent = s.mismatch_threshold;
  $("id-samples").textContent = s.samples;
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
  $("id-liveness-state").textContent = l ? l.state.replace("_", " ") : "not started";
  $("id-liveness-state").dataset.state = l ? l.state : "idle";
  $("id-liveness-reason").textContent = l && l.reason ? `(${l.reason.replaceAll("_", " ")})` : (l && l.phase === "calibrate" && l.state === "running" ? "(measuring the face at rest)" : "");
  $("id-steps").replaceChildren(...(l ? l.steps : []).map((st) => {
    const li = document.createElement("li");
    li.textContent = `${st.prompt}: ${st.state}`; li.dataset.state = st.state; return li;
  }));
  $("id-liveness").disabled = !!(l && l.state === "running");
  const sp = s.spoken;
  $("spoken-state").textContent = sp ? sp.state : "not started";
  show($("spoken-run"), !!(sp && sp.state === "running"));
  if (sp) {
    $("spoken-phrase").textContent = sp.phrase;
    $("spoken-questions").replaceChildren(...sp.questions.map((q) => {
      const li = document.createElement("li"); li.textContent = q; return li;
    }));
  }
}

function connect() {
  const sig = new Signaling(() => ({}));
  sig.addEventListener("welcome", async (ev) => {
    show($("login"), false); show($("console"), true);
    $("me").textContent = ev.detail.display_name;
    const st = ev.detail.state;
    setTellerState(st.teller_state, st.reason);
    if (st.call && ["connecting", "active"].includes(st.call.state) && (!state.pc || state.pc.connectionState !== "connected")) {
      $("customer-name").textContent = st.call.peer?.display_name || "";
      show($("call"), true); await negotiate(sig);
    }
  });
  sig.addEventListener("teller.state", (ev) => setTellerState(ev.detail.state, ev.detail.reason, ev.detail.wrap_up_s));
  const LANGUAGE_NAMES = { en: "English", zh: "Chinese (中文)" };
  sig.addEventListener("offer.incoming", (ev) => {
    state.offer = ev.detail;
    ring.start();
    $("offer-name").textContent = ev.detail.customer.display_name;
    $("offer-business").textContent = label(ev.detail.business_type);
    timers.offerUntil = Date.now() + ev.detail.ring_timeout_s * 1000; tick();
    $("offer-error").textContent = "";
    $("offer-language").textContent = LANGUAGE_NAMES[ev.detail.language] || ev.detail.language;
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
  sig.addEventListener("call.peer", (ev) => {
    $("peer-status").textContent = ev.detail.connection === "reconnecting" ? "Customer connection dropped; waiting for them to return." : (ev.detail.audio ? "" : "Customer muted their microphone.");
  });
  sig.addEventListener("call.ended", (ev) => {
    state.pc?.close(); state.pc = null; show($("call"), false); timers.callSince = null;
    $("last-call").textContent = `Last call ended: ${label(ev.detail.reason)}`;
  });
  sig.addEventListener("error", (ev) => showError(ev.detail.re, ev.detail.message));
  sig.addEventListener("assist.state", (ev) => {
    const s = ev.detail.state;
    $("assist-state").textContent = s; $("assist-state").dataset.state = s;
    show($("screen"), s === "active");
    show($("assist-stop"), ["requested", "granted", "active"].includes(s));
    show($("assist-request"), !["requested", "granted", "active"].includes(s));
  });
  sig.addEventListener("call.context", (ev) => {
    const c = ev.detail;
    $("business-title").textContent = c.business_type.title;
    $("evidence-required").textContent = c.business_type.required_evidence.join(", ") || "none";
    $("evidence-have").textContent = c.evidence.join(", ") || "none";
    $("nav-destination").replaceChildren(...c.destinations.map((d) => new Option(d.title, d.id)));
    $("reason-code").replaceChildren(new Option("(reason)", ""), ...c.reason_codes.map((r) => new Option(r, r)));
    if ($("disposition").dataset.call !== c.call_id) {  // a new call: a new disposition
      $("disposition").dataset.call = c.call_id;
      $("disposition").replaceChildren(...(c.dispositions || []).map((d) => new Option(label(d), d)));
      $("wrapup-notes").value = "";
      state.dispositionRecorded = false;
    }
    $("decision-result").textContent = "";
    const day = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
    const titles = Object.fromEntries((c.transfer_types || []).map((b) => [b.id, b.title]));
    $("customer-history").textContent = c.history && c.history.length
      ? `Earlier calls: ${c.history.map((h) => `${day.format(new Date(h.at * 1000))} ${titles[h.business_type] || h.business_type}: ${h.outcome || "not over"}${h.reason ? ` (${label(h.reason)})` : ""}`).join("; ")}`
      : "First call with us.";
    if ($("transfer-type").dataset.call !== c.call_id) {  // once per call: keep the teller's choice
      $("transfer-type").dataset.call = c.call_id;
      $("transfer-type").replaceChildren(...(c.transfer_types || []).map((b) => new Option(b.title, b.id)));
      $("transfer-type").value = c.business_type.id;
      $("transfer-teller").value = ""; $("transfer-note").value = "";
    }
  });
  sig.addEventListener("identity.status", (ev) => renderIdentity(ev.detail));
  sig.addEventListener("review.recorded", (ev) => {
    $("decision-result").textContent = `Recorded: ${ev.detail.decision}` +
      (ev.detail.pending_audit ? " (final after a second approval by an auditor)" : "");
  });
  const OTP_TEXT = { sent: "code sent; the customer types it", wrong: "wrong code entered",
    verified: "verified (TAN)", failed: "failed: no attempts left", expired: "expired",
    delivery_failed: "the bank could not be reached; try again" };
  sig.addEventListener("otp.state", (ev) => {
    const m = ev.detail;
    $("otp-state").dataset.state = m.state;
    $("otp-state").textContent = OTP_TEXT[m.state] + (m.state === "wrong" ? ` (${m.attempts_left} left)` : "");
  });
  const docs = {};
  const SCRIPT_TEXT = { open: "not read yet", read: "waiting for the customer",
    question: "the customer has a question: answer it, then ask again", confirmed: "confirmed" };
  sig.addEventListener("script.state", (ev) => {
    show($("script-panel"), true);
    $("script-steps").replaceChildren(...ev.detail.steps.map((s) => {
      const li = document.createElement("li"); li.dataset.step = s.id; li.dataset.state = s.state;
      const title = document.createElement("strong"); title.textContent = s.title;
      const text = document.createElement("p"); text.textContent = s.text;
      const st = document.createElement("span"); st.className = "state"; st.textContent = SCRIPT_TEXT[s.state];
      li.append(title, " ", st, text);
      if (s.state !== "confirmed") {
        const b = document.createElement("button"); b.className = "small secondary";
        b.textContent = s.state === "open" ? "Read: ask to confirm" : "Ask again";
        b.onclick = () => send({ type: "script.read", step: s.id });
        li.append(b);
      }
      return li;
    }));
  });
  sig.addEventListener("call.ended", () => {
    show($("script-panel"), false);
    for (const side of ["front", "back"]) delete docs[side];
    $("id-doc-state").textContent = ""; $("otp-state").textContent = "";
    $("location-state").textContent = "not asked";
  });
  const PLACE_TEXT = { allowed: "in an allowed region", outside: "OUTSIDE the allowed regions",
    shared: "shared", not_shared: "not shared yet" };
  sig.addEventListener("id.state", (ev) => {
    const m = ev.detail;
    docs[m.side] = m.side === "back" ? "back captured" : m.faces === 0
      ? "front captured, no face found on it: capture again"
      : m.distance_reference === null && m.distance_live === null
      ? "front captured, but its photo could not be told from the customer's face: verify the face first, then have the card fill the camera"
      : `front captured; photo vs reference ${m.distance_reference ?? "-"}, vs live face ${m.distance_live ?? "-"}: ${m.matched ? "match" : "NO MATCH"}`;
    $("id-doc-state").dataset.matched = m.matched ?? "";
    $("id-doc-state").textContent = [docs.front, docs.back].filter(Boolean).join("; ");
  });
  sig.addEventListener("location.state", (ev) => {
    const m = ev.detail;
    $("location-state").dataset.state = m.state;
    $("location-state").textContent = PLACE_TEXT[m.state] + (m.region ? ` (${m.region})` : "") +
      (m.required ? "; required for approval" : "");
  });
  sig.connect();
  // what the teller does: clears the error shown beside that tool, then sends
  const send = (msg) => { $(areaOf(msg.type)).textContent = ""; sig.send(msg); };

  $("id-verify").onclick = () => send({ type: "identity.verify" });
  $("id-liveness").onclick = () => send({ type: "identity.liveness" });
  const judge = (accept) => {
    const notes = $("id-notes").value.trim();
    if (notes.length < 3) { showError("identity.judge", "Write what you compared before judging."); return; }
    send({ type: "identity.judge", accept, notes });
  };
  $("spoken-start").onclick = () => send({ type: "identity.spoken_check", reason: $("spoken-reason").value, notes: $("spoken-notes").value.trim() });
  const attest = (passed) => {
    const notes = $("spoken-attest-notes").value.trim();
    if (notes.length < 3) { showError("identity.attest", "Write what you heard and saw before attesting."); return; }
    send({ type: "identity.attest", passed, notes });
  };
  $("spoken-pass").onclick = () => attest(true);
  $("spoken-fail").onclick = () => attest(false);
  $("id-accept").onclick = () => judge(true);
  $("id-reject").onclick = () => judge(false);
  $("assist-request").onclick = () => send({ type: "assist.request", purpose: $("assist-purpose").value || "guide you in the app" });
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
    $("last-call").textContent += ` Disposition: ${label(ev.detail.disposition)}.`;
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
    button.textContent = kind === "audio" ? (track.enabled ? "Mute" : "Unmute") : (track.enabled ? "Camera off" : "Camera on");
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

staffLogin(connect);
