// Words in the reader's language. Each page registers its catalogues (static/lang/*.js,
// {en: {...}, zh: {...}}); the server sends codes and the page renders them from here.
// The language comes from the URL (#lang=zh, as the banking app opens the customer
// page), else the reader's earlier choice, else the browser's. It is switchable on
// every page and kept per browser.

export const LANGUAGES = { en: "English", zh: "中文" };
const LOCALES = { en: "en-GB", zh: "zh-CN" };
const SPEECH = { en: "en-US", zh: "zh-CN" };
const STRINGS = { en: {}, zh: {} };

function chosen() {
  const fromApp = new URLSearchParams(location.hash.slice(1)).get("lang");
  const saved = localStorage.getItem("vteller.lang");
  const browser = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
  return [fromApp, saved, browser].find((l) => l && l in STRINGS) || "en";
}

export const i18n = { lang: chosen() };

// Add a page's catalogues ({en: {...}, zh: {...}}); later ones win on equal keys.
export function register(...catalogues) {
  for (const catalogue of catalogues) {
    for (const lang of Object.keys(STRINGS)) Object.assign(STRINGS[lang], catalogue[lang] || {});
  }
}

export function t(key, vars = {}) {
  const text = STRINGS[i18n.lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function has(key) { return key in STRINGS.en; }

// The words for a code the server sends (a state, reason, business type...): the
// catalogue's "code.<code>", else the code with spaces.
export function label(code) {
  if (code === null || code === undefined || code === "") return "";
  const key = `code.${code}`;
  return has(key) ? t(key) : String(code).replaceAll("_", " ");
}

// The words for a server error: in English the server's own message (the most
// specific); in another language "error.<code>" from the catalogue, else that message.
export function errorText(error) {
  const key = `error.${error.code}`;
  if ((i18n.lang === "en" && error.message) || !has(key)) return error.message || String(error.code);
  return t(key);
}

// Fill `el` with the text of `key`, putting the given elements where their {name}
// stands (word order differs between languages; the elements keep their ids).
export function fill(el, key, parts) {
  const text = STRINGS[i18n.lang][key] ?? STRINGS.en[key];
  el.replaceChildren(...text.split(/(\{\w+\})/).filter(Boolean).map((piece) => {
    const name = piece.match(/^\{(\w+)\}$/)?.[1];
    return name && parts[name] ? parts[name] : document.createTextNode(piece);
  }));
}

export function speechLang() { return SPEECH[i18n.lang]; }
export function locale() { return LOCALES[i18n.lang]; }

// A moment (seconds since the epoch) in local time with the zone shown, e.g.
// "2026-11-30 21:04:05 GMT+8": numeric in every language, so it sorts and reads the same.
const TIME = new Intl.DateTimeFormat("sv-SE", { year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
export function formatTime(t) { return TIME.format(new Date(t * 1000)); }
export function formatDay(t) { return new Intl.DateTimeFormat(locale(), { dateStyle: "medium" }).format(new Date(t * 1000)); }

// Fill every element carrying data-i18n (text), data-i18n-label (aria-label),
// data-i18n-placeholder or data-i18n-title; the page's <title> from data-i18n on <html>.
export function apply(root = document) {
  document.documentElement.lang = i18n.lang === "zh" ? "zh-CN" : "en";
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-label]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nLabel)));
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  root.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
  document.title = t(document.documentElement.dataset.title || "title");
}

const listeners = [];
// `fn` runs after every switch of language (to redraw what the page wrote itself).
export function onLanguage(fn) { listeners.push(fn); }

export function setLang(lang) {
  if (!(lang in STRINGS)) return;
  i18n.lang = lang;
  localStorage.setItem("vteller.lang", lang);
  apply();
  for (const fn of listeners) fn(lang);
}

// Wire a <select> of languages: shows the current one, switches on change.
export function switcher(select) {
  select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => new Option(name, code)));
  select.value = i18n.lang;
  select.onchange = () => setLang(select.value);
}
