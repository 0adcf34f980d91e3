import { Signaling, sendOffer, show, say } from "./signaling.js";
import { apply, fill, has, i18n, register, setLang, speechLang, t } from "./i18n.js";
import CUSTOMER from "./lang/customer.js";

register(CUSTOMER);

const $ = (id) => document.getElementById(id);
const state = { pc: null, local: null, token: null, elderly: false, callId: null, screen: null, screenSender: null };
window.vteller = state;  // for tests and support tooling: read-only inspection

async function getToken() {
  const fromApp = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromApp) { history.replaceState(null, "", location.pathname); return fromApp; }
  const r = await fetch("/api/dev/customer-token", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: $("name").value || "Demo Customer",
                           birth_year: Number($("birth-year").value) || 1958 }),
  });
  if (!r.ok) throw new Error(t("open_from_app"));
  const demo = await r.json();
  $("dev-id").textContent = `Demo customer id (dev mode): ${demo.customer_id}`;
  return demo.token;
}

function status(text, aloud = true) { $("status").textContent = text; say(text, aloud && state.elderly, speechLang()); }
function speak(text) { say(text, state.elderly, speechLang()); }

// The liveness prompt in the customer's language (the server's English text if unknown).
function promptText(m) {
  if (m.action === "speak_phrase") return t("speak_phrase");
  if (!m.action) return m.state === "passed" ? t("thank_you") : t("check_finished");
  if (m.phase === "again") return t("rest_again");
  if (m.phase === "release") {
    const key = "release_" + m.action.replace(/_(left|right)$/, "");
    return has(key) ? t(key) : m.prompt;
  }
  return has(m.action) ? t(m.action) : m.prompt;
}

async function startMedia() {
  if (!state.local) {
    state.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    $("self").srcObject = state.local;
  }
}

async function negotiate(sig) {
  state.pc?.close();
  const pc = new RTCPeerConnection({ iceServers: sig.welcome?.ice_servers || [] });
  state.pc = pc;
  // m-line layout is part of the contract: audio, camera, screen (screen sends nothing yet).
  pc.addTransceiver(state.local.getAudioTracks()[0], { direction: "sendrecv", streams: [state.local] });
  pc.addTransceiver(state.local.getVideoTracks()[0], { direction: "sendrecv", streams: [state.local] });
  state.screenSender = pc.addTransceiver("video", { direction: "sendonly" }).sender;
  const remote = new MediaStream();
  $("remote").srcObject = remote;
  pc.ontrack = (ev) => remote.addTrack(ev.track);
  // A phone changing networks (Wi-Fi to mobile data) loses its path: offer a fresh
  // connection on the same call (the server replaces the leg; aiortc has no ICE restart)
  // when the connection fails, stays disconnected for 3 s, or the network changes.
  pc.onconnectionstatechange = () => {
    clearTimeout(state.reconnectTimer);
    if (pc !== state.pc || !state.callId) return;
    if (pc.connectionState === "failed") negotiate(sig);
    if (pc.connectionState === "disconnected") {
      state.reconnectTimer = setTimeout(() => { if (pc === state.pc && pc.connectionState === "disconnected") negotiate(sig); }, 3000);
    }
  };
  await sendOffer(pc, sig);
}

async function startShare(sig) {
  try {
    state.screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
  } catch (e) {
    sig.send({ type: "assist.stop" });  // capture refused or unavailable: end the consent
    return;
  }
  const track = state.screen.getVideoTracks()[0];
  track.onended = () => sig.send({ type: "assist.stop" });  // stopped from the browser UI
  await state.screenSender.replaceTrack(track);  // pre-negotiated transceiver: no renegotiation
  sig.send({ type: "assist.started" });
}

async function stopShare() {
  if (state.screenSender) await state.screenSender.replaceTrack(null);
  state.screen?.getTracks().forEach((t) => t.stop());
  state.screen = null;
}

// The opening hours, in the customer's language and time zone (the browser's Intl).
function showHours(closed = true) {
  const s = state.service;
  if (!s) return;
  $("closed-title").textContent = t(closed ? "closed_title" : "no_teller_hours");
  const lang = i18n.lang === "zh" ? "zh-CN" : "en-GB";
  const when = new Intl.DateTimeFormat(lang, { weekday: "long", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  $("closed-next").textContent = s.next_open_at ? t("next_open", { when: when.format(new Date(s.next_open_at * 1000)) }) : "";
  const dayName = new Intl.DateTimeFormat(lang, { weekday: "long" });
  const monday = new Date(Date.UTC(2024, 0, 1, 12));  // a Monday
  $("closed-hours").replaceChildren(...Object.entries(s.days).map(([, periods], i) => {
    const li = document.createElement("li");
    const day = dayName.format(new Date(monday.getTime() + i * 86400000));
    li.textContent = `${day}: ${periods.length ? periods.map(([a, b]) => `${a}-${b}`).join(", ") : t("closed_day")}`;
    return li;
  }), Object.assign(document.createElement("li"), { textContent: t("hours_zone", { zone: s.timezone }) }));
  show($("closed"), true);
}

// Booking a video appointment when nobody can serve now: the free times, shown in the
// bank's time zone (named), grouped by day; or the appointment already held.
const booking = { what: null, zone: "UTC", held: null };

function offerBooking(sig) {
  if (!$("booking").hidden) return;  // shown already (the queue status repeats)
  booking.what = { business_type: state.business || $("business-type").value, language: i18n.lang };
  sig.send({ type: "appointment.find", ...booking.what });
}

function slotTime(at, withDay = true) {
  return new Intl.DateTimeFormat(i18n.lang === "zh" ? "zh-CN" : "en-GB", { timeZone: booking.zone,
    ...(withDay ? { weekday: "long", month: "long", day: "numeric" } : {}),
    hour: "2-digit", minute: "2-digit", timeZoneName: "short" }).format(new Date(at * 1000));
}

function renderSlots(m) {
  booking.zone = m.timezone; booking.held = m.booked[0] || null;
  const days = new Map();
  for (const at of m.slots) {
    const day = new Intl.DateTimeFormat(i18n.lang === "zh" ? "zh-CN" : "en-GB", { timeZone: m.timezone,
      weekday: "long", month: "long", day: "numeric" }).format(new Date(at * 1000));
    if (!days.has(day)) days.set(day, []);
    days.get(day).push(at);
  }
  $("slot").replaceChildren(...[...days].map(([day, starts]) => {
    const group = document.createElement("optgroup"); group.label = day;
    group.append(...starts.map((at) => new Option(slotTime(at, false), String(at))));
    return group;
  }));
  renderBooking(m.slots.length === 0);
}

function renderBooking(none = false) {
  show($("booking"), true);
  show($("booked"), !!booking.held);
  show($("book-form"), !booking.held && !none);
  show($("book-none"), !booking.held && none);
  if (booking.held) $("booked-at").textContent = t("booked_at", { when: slotTime(booking.held.starts_at) });
}

function stopMedia() {  // camera and microphone off once the call is over
  state.local?.getTracks().forEach((track) => track.stop());
  state.local = null;
  $("self").srcObject = null;
  $("preview").srcObject = null; show($("device-check"), false);
}

// Before joining: see yourself and watch the microphone level (the same devices the
// call will use; released with the call, or after a minute if no call starts).
async function checkDevices() {
  show($("device-check"), true);
  $("device-result").textContent = "";
  try {
    await startMedia();
  } catch (e) {
    $("device-result").textContent = t(e.name === "NotAllowedError" ? "devices_blocked" : "devices_missing");
    return;
  }
  $("preview").srcObject = state.local;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser(); analyser.fftSize = 512;
  ctx.createMediaStreamSource(state.local).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let heard = false;
  const until = Date.now() + 60000;
  const step = () => {
    if (!state.local || Date.now() > until) {
      ctx.close();
      if (!state.pc && !state.callId) stopMedia();
      return;
    }
    analyser.getFloatTimeDomainData(samples);
    const level = Math.min(1, Math.sqrt(samples.reduce((s, v) => s + v * v, 0) / samples.length) * 4);
    $("mic-level").value = level;
    if (level > 0.02 && !heard) { heard = true; }
    $("device-result").textContent = t(heard ? "devices_ok" : "devices_speak");
    requestAnimationFrame(step);
  };
  step();
}

function endCall(text) {
  stopShare(); show($("consent"), false); show($("challenge"), false); show($("share-bar"), false); show($("nav"), false);
  for (const id of ["script", "otp", "location"]) show($(id), false);
  if (state.callId && state.served) {  // an end screen with the reference and the survey
    $("end-reference").textContent = state.callId;
    $("survey").reset(); show($("survey"), true); $("survey-result").textContent = "";
    state.surveyCall = state.callId; show($("end"), true);
  }
  state.served = false;
  state.pc?.close(); state.pc = null; state.callId = null;
  stopMedia();
  show($("in-call"), false); show($("start-panel"), true);
  status(text);
}

const tr = t;  // inside handlers where `t` names a media track

async function main() {
  apply();
  state.business = new URLSearchParams(location.hash.slice(1)).get("business");  // set by the banking app
  // a customer token opens one connection (single use); reconnects resume with the secret
  const sig = new Signaling(() => { const token = state.token; state.token = null; return { token }; });
  sig.addEventListener("welcome", async (ev) => {
    state.service = ev.detail.service;
    state.elderly = ev.detail.elderly;
    document.body.classList.toggle("elderly", state.elderly);
    const call = ev.detail.state.call;
    if (call && ["connecting", "active"].includes(call.state) && (!state.pc || state.pc.connectionState !== "connected")) {
      state.callId = call.call_id; await startMedia(); show($("in-call"), true); show($("start-panel"), false);
      await negotiate(sig);
    } else if (!call) {
      show($("start-panel"), true);
    }
  });
  sig.addEventListener("queue.status", (ev) => {
    const m = ev.detail;
    state.callId = m.call_id;
    $("green").hidden = !m.green_channel;
    if (m.state === "queued" && !m.servable) { status(t("no_teller")); if (state.service) showHours(false); offerBooking(sig); }
    else if (m.state === "queued") {
      const wait = m.ewt_s === null ? "" : m.ewt_s < 60 ? t("wait_under_minute") : t("wait_minutes", { n: Math.round(m.ewt_s / 60) });
      status((m.position === 1 ? t("you_are_next") : t("number_in_line", { n: m.position })) + wait);
    }
    else if (m.state === "offered") status(t("about_to_answer"));
    else if (m.state === "connecting") status(t("connecting"));
    else if (m.state === "active") status(t("connected"), false);
  });
  sig.addEventListener("call.started", async (ev) => {
    state.served = true; state.callId = ev.detail.call_id;
    $("peer-name").textContent = ev.detail.peer.display_name;
    show($("in-call"), true); show($("waiting"), false);
    await negotiate(sig);
  });
  sig.addEventListener("webrtc.answer", (ev) => state.pc?.setRemoteDescription({ type: "answer", sdp: ev.detail.sdp }));
  sig.addEventListener("call.peer", (ev) => {
    $("peer-status").textContent = ev.detail.connection === "reconnecting" ? t("peer_reconnecting") : "";
  });
  sig.addEventListener("call.ended", (ev) => {
    if (ev.detail.reason === "transferred") {  // to another teller: keep camera and microphone
      state.pc?.close(); state.pc = null; state.served = false;
      for (const id of ["script", "otp", "location", "consent", "nav", "challenge"]) show($(id), false);
      stopShare(); show($("in-call"), false); show($("waiting"), true);
      status(t("transferring")); speak(t("transferring"));
      return;
    }
    show($("waiting"), false); endCall(ev.detail.reason.startsWith("hangup") ? t("ended_thanks") : t("ended_reason", { reason: ev.detail.reason })); });
  sig.addEventListener("error", (ev) => {
    const m = ev.detail;
    if (m.code === "closed") {  // outside the opening hours: say so, with the hours
      show($("waiting"), false); show($("start-panel"), true); stopMedia();
      showHours(); offerBooking(sig); return;
    }
    if (m.re && m.re.startsWith("appointment.")) {  // beside the booking, in the customer's words
      $("book-error").textContent = t("book_failed");
      sig.send({ type: "appointment.find", ...booking.what }); return;
    }
    if (m.code === "service_unavailable" && m.re === "queue.join") {  // the queue is briefly unreachable
      show($("waiting"), false); show($("start-panel"), true);
      $("error").textContent = t("busy_try_again");
      return;
    }
    $("error").textContent = m.message;
  });
  // the signaling connection dropped (the call itself may go on): say so until it is back
  sig.addEventListener("disconnected", () => { if (state.callId) status(t("reconnecting")); });
  sig.addEventListener("welcome", () => { if (state.callId && $("status").textContent === t("reconnecting")) status(t("connected"), false); });
  sig.addEventListener("assist.state", (ev) => {
    const m = ev.detail;
    show($("consent"), m.state === "requested");
    show($("share-bar"), m.state === "active");
    if (m.state === "requested") {
      const who = document.createElement("span"); who.id = "consent-teller"; who.textContent = m.teller;
      fill($("consent-title"), "consent_title", { teller: who });
      $("consent-purpose").textContent = m.purpose;
      speak(t("asks_screen", { teller: m.teller, purpose: m.purpose }));
    }
    if (m.state === "active") {
      const who = document.createElement("strong"); who.id = "share-teller"; who.textContent = m.teller;
      fill($("share-text"), "shared_with", { teller: who });
      speak(t("now_shared", { teller: m.teller }));
    }
    if (["stopped", "revoked", "expired", "denied"].includes(m.state)) stopShare();
  });
  sig.addEventListener("location.ask", () => {
    show($("location"), true); $("location-result").textContent = ""; speak(t("location_ask"));
  });
  sig.addEventListener("script.step", (ev) => {
    const m = ev.detail;
    $("script").dataset.step = m.step;
    $("script-index").textContent = t("script_index", { index: m.index, total: m.total });
    $("script-title").textContent = m.title;
    $("script-text").textContent = m.text;
    show($("script"), true);
    speak(`${m.title}. ${m.text}`);
  });
  sig.addEventListener("otp.state", (ev) => {
    const m = ev.detail;
    $("otp").dataset.state = m.state;
    if (m.state === "sent") {
      $("otp-prompt").textContent = t("otp_prompt", { digits: m.digits });
      $("otp-code").value = ""; $("otp-result").textContent = "";
      show($("otp"), true); show($("otp-form"), true); $("otp-code").focus();
      speak(t("otp_prompt", { digits: m.digits }));
      return;
    }
    const text = t("otp_" + m.state, { n: m.attempts_left });
    $("otp-result").textContent = text; speak(text);
    if (m.state !== "wrong") {
      show($("otp-form"), false);
      setTimeout(() => show($("otp"), false), 5000);
    }
  });
  sig.addEventListener("nav.prompt", (ev) => {
    const m = ev.detail;
    // the bank's title in English; the catalogue's words for the page's code elsewhere
    const words = i18n.lang !== "en" && has(`dest.${m.id}`) ? t(`dest.${m.id}`) : m.title;
    const title = document.createElement("strong"); title.id = "nav-title"; title.textContent = words;
    fill($("nav-text"), "suggests", { title });
    $("nav-open").href = m.link; $("nav-open").dataset.id = m.id;
    show($("nav"), true); speak(t("suggests", { title: words }));
  });
  sig.addEventListener("identity.challenge", (ev) => {
    const m = ev.detail;
    show($("challenge"), true);
    $("challenge").dataset.action = m.action || "";
    $("challenge").dataset.state = m.state;
    $("challenge-step").textContent = m.step ? t("step_of", { step: m.step, steps: m.steps }) : (m.state === "running" ? t("identity_check") : "");
    const prompt = promptText(m);
    $("challenge-prompt").textContent = prompt;
    $("challenge-phrase").textContent = m.phrase || "";
    show($("challenge-phrase"), !!m.phrase);
    speak(m.phrase ? `${prompt}: ${m.phrase}` : prompt);
    document.body.classList.toggle("challenging", m.state === "running");
    if (m.state !== "running") setTimeout(() => show($("challenge"), false), 4000);
  });
  sig.addEventListener("identity.hint", (ev) => {
    if (!has("hint_" + ev.detail.hint)) return;
    const text = t("hint_" + ev.detail.hint);
    $("hint").textContent = text; show($("hint"), true); speak(text);
    clearTimeout(state.hintTimer); state.hintTimer = setTimeout(() => show($("hint"), false), 6000);
  });
  $("consent-allow").onclick = () => { show($("consent"), false); sig.send({ type: "assist.respond", allow: true }); startShare(sig); };
  $("consent-deny").onclick = () => { show($("consent"), false); sig.send({ type: "assist.respond", allow: false }); };
  $("share-stop").onclick = () => { sig.send({ type: "assist.stop" }); stopShare(); };
  $("nav-open").onclick = () => { sig.send({ type: "nav.opened", destination: $("nav-open").dataset.id }); show($("nav"), false); };
  $("nav-dismiss").onclick = () => show($("nav"), false);
  $("location-share").onclick = () => {
    if (!navigator.geolocation) { $("location-result").textContent = t("location_failed"); return; }
    navigator.geolocation.getCurrentPosition((pos) => {
      sig.send({ type: "location.report", lat: pos.coords.latitude, lon: pos.coords.longitude,
        accuracy_m: Math.min(pos.coords.accuracy, 1000000) });
      show($("location"), false);
    }, () => { $("location-result").textContent = t("location_failed"); },
    { enableHighAccuracy: true, timeout: 15000 });
  };
  $("location-no").onclick = () => show($("location"), false);
  $("script-confirm").onclick = () => { sig.send({ type: "script.confirm", step: $("script").dataset.step }); show($("script"), false); };
  $("script-question").onclick = () => { sig.send({ type: "script.question", step: $("script").dataset.step }); show($("script"), false); };
  $("otp-form").onsubmit = (ev) => {
    ev.preventDefault();
    sig.send({ type: "otp.submit", code: $("otp-code").value.trim() });
  };

  $("check-devices").onclick = checkDevices;
  sig.addEventListener("appointment.slots", (ev) => renderSlots(ev.detail));
  sig.addEventListener("appointment.booked", (ev) => {
    booking.held = ev.detail.appointment; $("book-error").textContent = ""; renderBooking();
  });
  sig.addEventListener("appointment.cancelled", () => {
    booking.held = null; $("book-error").textContent = t("booking_cancelled");
    sig.send({ type: "appointment.find", ...booking.what });
  });
  $("book").onclick = () => { $("book-error").textContent = ""; sig.send({ type: "appointment.book", ...booking.what, starts_at: Number($("slot").value) }); };
  $("cancel-booking").onclick = () => sig.send({ type: "appointment.cancel", appointment_id: booking.held.appointment_id });
  $("survey").onsubmit = (ev) => {
    ev.preventDefault();
    const score = new FormData($("survey")).get("score");
    if (!score) { $("survey-result").textContent = t("survey_pick"); return; }
    sig.send({ type: "survey.submit", call_id: state.surveyCall, score: Number(score),
      comment: $("survey-comment").value.trim() });
  };
  sig.addEventListener("survey.recorded", () => {
    show($("survey"), false); $("survey-result").textContent = t("survey_thanks");
  });
  $("start").onclick = async () => {
    show($("end"), false); show($("closed"), false); show($("booking"), false);
    try {
      $("error").textContent = "";
      state.token = state.token || await getToken();
      await startMedia();
      if (!sig.ws) { sig.connect(); await new Promise((r) => sig.addEventListener("welcome", r, { once: true })); }
      sig.send({ type: "queue.join", business_type: state.business || $("business-type").value, language: i18n.lang });
      show($("start-panel"), false); show($("waiting"), true);
    } catch (e) { $("error").textContent = e.message; }
  };
  $("leave").onclick = () => { sig.send({ type: "queue.leave" }); show($("waiting"), false); show($("start-panel"), true); status(""); stopMedia(); };
  $("hangup").onclick = () => sig.send({ type: "call.hangup" });
  $("mute").onclick = () => {
    const t = state.local.getAudioTracks()[0]; t.enabled = !t.enabled;
    $("mute").textContent = t.enabled ? tr("mute") : tr("unmute");
    sig.send({ type: "call.media_state", audio: t.enabled, video: state.local.getVideoTracks()[0].enabled });
  };
  $("camera").onclick = () => {
    const t = state.local.getVideoTracks()[0]; t.enabled = !t.enabled;
    $("camera").textContent = t.enabled ? tr("camera_off") : tr("camera_on");
    sig.send({ type: "call.media_state", audio: state.local.getAudioTracks()[0].enabled, video: t.enabled });
  };
  $("elderly-toggle").onclick = () => { state.elderly = !state.elderly; document.body.classList.toggle("elderly", state.elderly); };
  $("lang").value = i18n.lang;
  $("lang").onchange = () => setLang($("lang").value);
  const moved = () => { if (state.pc && state.callId && state.local) negotiate(sig); };
  navigator.connection?.addEventListener("change", moved);  // a new network (where supported)
  window.addEventListener("online", moved);
  if (sessionStorage.getItem("vteller.resume")) sig.connect();  // page reload during a call
}
main();
