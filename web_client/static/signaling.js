import { errorText, t } from "./i18n.js";

// Signaling client: hello/resume, automatic reconnect within the grace period.
export class Signaling extends EventTarget {
  constructor(hello) {
    super();
    this.hello = hello;            // () => extra hello fields (e.g. {token})
    this.resume = sessionStorage.getItem("vteller.resume");
    this.closedByUs = false;
    this.retry = 0;
    this.welcome = null;
    this.moveTo = null;            // node.move: the next connect goes there, once
  }
  connect() {
    // a node that hosts this customer's call asked for it (node.move); if that fails,
    // the usual address resumes and keeps the place in the queue
    const url = this.moveTo || `wss://${location.host}/ws`;
    this.moveTo = null;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 0;
      const msg = { type: "hello", v: 1 };
      if (this.resume) msg.resume = this.resume; else Object.assign(msg, this.hello());
      this.send(msg);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "welcome") {
        this.welcome = msg;
        this.resume = msg.resume;
        sessionStorage.setItem("vteller.resume", msg.resume);
      }
      if (msg.type === "node.move") { this.moveTo = msg.url; this.retry = 0; return; }
      if (msg.type === "error" && msg.code === "resume_failed") {
        this.resume = null;
        sessionStorage.removeItem("vteller.resume");
        this.send(Object.assign({ type: "hello", v: 1 }, this.hello()));
        return;
      }
      this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
      this.dispatchEvent(new CustomEvent("message", { detail: msg }));
    };
    ws.onclose = () => {
      this.dispatchEvent(new CustomEvent("disconnected"));
      if (this.closedByUs) return;
      const delay = this.moveTo ? 0 : Math.min(5000, 500 * 2 ** this.retry++);
      setTimeout(() => this.connect(), delay);
    };
  }
  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }
  close() { this.closedByUs = true; sessionStorage.removeItem("vteller.resume"); this.ws?.close(); }
}

// Offer with all ICE candidates gathered (the server does not trickle).
export async function sendOffer(pc, sig) {
  sig.send({ type: "webrtc.offer", sdp: await gatheredOffer(pc) });
}

export async function gatheredOffer(pc) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }
  return pc.localDescription.sdp;
}

export function show(el, visible) { el.hidden = !visible; }

export function say(text, enabled, lang) {
  if (!enabled || !("speechSynthesis" in window)) return;
  speechSynthesis.cancel();
  const utterance = new SpeechSynthesisUtterance(text);
  if (lang) utterance.lang = lang;  // a Chinese voice for Chinese text
  speechSynthesis.speak(utterance);
}

// Staff pages: log in with the form (ids login-form, username, password, login-error)
// unless the session cookie is still valid, then call `connect`.
export function staffLogin(connect) {
  const $ = (id) => document.getElementById(id);
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const r = await fetch("/api/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("username").value, password: $("password").value }),
    });
    if (!r.ok) {
      const error = (await r.json().catch(() => ({}))).error || {};
      $("login-error").textContent = error.code === "unauthenticated" || r.status === 401 ? t("login_failed") : errorText(error);
      return;
    }
    $("password").value = "";
    connect();
  };
  fetch("/api/me").then((r) => { if (r.ok) connect(); else show($("login"), true); });
}
