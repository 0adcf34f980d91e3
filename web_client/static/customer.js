import { Signaling, sendOffer, show, say } from "./signaling.js";

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
  if (!r.ok) throw new Error("Please open this page from your banking app.");
  const demo = await r.json();
  $("dev-id").textContent = `Demo customer id (dev mode): ${demo.customer_id}`;
  return demo.token;
}

function status(text, speak = true) { $("status").textContent = text; say(text, speak && state.elderly); }

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
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed" && state.callId) negotiate(sig);
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

function endCall(text) {
  stopShare(); show($("consent"), false); show($("challenge"), false); show($("share-bar"), false); show($("nav"), false);
  state.pc?.close(); state.pc = null; state.callId = null;
  show($("in-call"), false); show($("start-panel"), true);
  status(text);
}

async function main() {
  state.business = new URLSearchParams(location.hash.slice(1)).get("business");  // set by the banking app
  // a customer token opens one connection (single use); reconnects resume with the secret
  const sig = new Signaling(() => { const token = state.token; state.token = null; return { token }; });
  sig.addEventListener("welcome", async (ev) => {
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
    if (m.state === "queued" && !m.servable) status("No teller for this service is available right now. You can keep waiting or leave.");
    else if (m.state === "queued") {
      const wait = m.ewt_s === null ? "" : m.ewt_s < 60 ? " Expected wait: under a minute." : ` Expected wait: about ${Math.round(m.ewt_s / 60)} minutes.`;
      status((m.position === 1 ? "You are next." : `You are number ${m.position} in line.`) + wait);
    }
    else if (m.state === "offered") status("A teller is about to answer.");
    else if (m.state === "connecting") status("Connecting you to your teller...");
    else if (m.state === "active") status("You are connected.", false);
  });
  sig.addEventListener("call.started", async (ev) => {
    $("peer-name").textContent = ev.detail.peer.display_name;
    show($("in-call"), true); show($("waiting"), false);
    await negotiate(sig);
  });
  sig.addEventListener("webrtc.answer", (ev) => state.pc?.setRemoteDescription({ type: "answer", sdp: ev.detail.sdp }));
  sig.addEventListener("call.peer", (ev) => {
    $("peer-status").textContent = ev.detail.connection === "reconnecting" ? "Your teller's connection dropped; please wait." : "";
  });
  sig.addEventListener("call.ended", (ev) => { show($("waiting"), false); endCall(ev.detail.reason.startsWith("hangup") ? "The call has ended. Thank you." : `The call ended (${ev.detail.reason}).`); });
  sig.addEventListener("error", (ev) => { $("error").textContent = ev.detail.message; });
  sig.addEventListener("assist.state", (ev) => {
    const m = ev.detail;
    show($("consent"), m.state === "requested");
    show($("share-bar"), m.state === "active");
    if (m.state === "requested") {
      $("consent-teller").textContent = m.teller; $("consent-purpose").textContent = m.purpose;
      say(`${m.teller} asks to see your screen to ${m.purpose}. Press Allow or Deny.`, state.elderly);
    }
    if (m.state === "active") { $("share-teller").textContent = m.teller; say(`Your screen is now shared with ${m.teller}.`, state.elderly); }
    if (["stopped", "revoked", "expired", "denied"].includes(m.state)) stopShare();
  });
  sig.addEventListener("nav.prompt", (ev) => {
    const m = ev.detail;
    $("nav-title").textContent = m.title; $("nav-open").href = m.link; $("nav-open").dataset.id = m.id;
    show($("nav"), true); say(`Your teller suggests: ${m.title}.`, state.elderly);
  });
  sig.addEventListener("identity.challenge", (ev) => {
    const m = ev.detail;
    show($("challenge"), true);
    $("challenge").dataset.action = m.action || "";
    $("challenge").dataset.state = m.state;
    $("challenge-step").textContent = m.step ? `Step ${m.step} of ${m.steps}` : (m.state === "running" ? "Identity check" : "");
    $("challenge-prompt").textContent = m.prompt;
    $("challenge-phrase").textContent = m.phrase || "";
    show($("challenge-phrase"), !!m.phrase);
    say(m.phrase ? `${m.prompt}: ${m.phrase}` : m.prompt, state.elderly);
    if (m.state !== "running") setTimeout(() => show($("challenge"), false), 4000);
  });
  const HINTS = {
    come_closer: "Please move a little closer to the camera",
    more_light: "Please move to a brighter place",
    hold_still: "Please hold your phone still",
    face_camera: "Please look straight at the camera",
    alone_in_frame: "Please make sure only you are in the picture",
  };
  sig.addEventListener("identity.hint", (ev) => {
    const text = HINTS[ev.detail.hint];
    if (!text) return;
    $("hint").textContent = text; show($("hint"), true); say(text, state.elderly);
    clearTimeout(state.hintTimer); state.hintTimer = setTimeout(() => show($("hint"), false), 6000);
  });
  $("consent-allow").onclick = () => { show($("consent"), false); sig.send({ type: "assist.respond", allow: true }); startShare(sig); };
  $("consent-deny").onclick = () => { show($("consent"), false); sig.send({ type: "assist.respond", allow: false }); };
  $("share-stop").onclick = () => { sig.send({ type: "assist.stop" }); stopShare(); };
  $("nav-open").onclick = () => { sig.send({ type: "nav.opened", destination: $("nav-open").dataset.id }); show($("nav"), false); };
  $("nav-dismiss").onclick = () => show($("nav"), false);

  $("start").onclick = async () => {
    try {
      $("error").textContent = "";
      state.token = state.token || await getToken();
      await startMedia();
      if (!sig.ws) { sig.connect(); await new Promise((r) => sig.addEventListener("welcome", r, { once: true })); }
      sig.send({ type: "queue.join", business_type: state.business || $("business-type").value, language: "en" });
      show($("start-panel"), false); show($("waiting"), true);
    } catch (e) { $("error").textContent = e.message; }
  };
  $("leave").onclick = () => { sig.send({ type: "queue.leave" }); show($("waiting"), false); show($("start-panel"), true); status(""); };
  $("hangup").onclick = () => sig.send({ type: "call.hangup" });
  $("mute").onclick = () => {
    const t = state.local.getAudioTracks()[0]; t.enabled = !t.enabled;
    $("mute").textContent = t.enabled ? "Mute" : "Unmute";
    sig.send({ type: "call.media_state", audio: t.enabled, video: state.local.getVideoTracks()[0].enabled });
  };
  $("camera").onclick = () => {
    const t = state.local.getVideoTracks()[0]; t.enabled = !t.enabled;
    $("camera").textContent = t.enabled ? "Camera off" : "Camera on";
    sig.send({ type: "call.media_state", audio: state.local.getAudioTracks()[0].enabled, video: t.enabled });
  };
  $("elderly-toggle").onclick = () => { state.elderly = !state.elderly; document.body.classList.toggle("elderly", state.elderly); };
  if (sessionStorage.getItem("vteller.resume")) sig.connect();  // page reload during a call
}
main();
