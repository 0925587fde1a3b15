/*! Promptly web chat widget. Apache-2.0.
 *
 * Embed with one tag:  <script src="https://support.example.com/widget.js" async></script>
 * Optional attributes: data-title="Chat with us", data-open="true".
 * Page API:            window.Promptly.open(), .close(), .send(text), .identify({name, email})
 * Theming:             #promptly-widget { --promptly-accent: #2f6b3a; }
 *
 * Plain ES2020, no dependencies, no build step. Message text is only ever set with
 * textContent; links come only from citations and only for http(s) or same-origin URLs.
 */
(() => {
  "use strict";

  if (window.Promptly && window.Promptly.__promptly) return; // included twice

  // ---------------------------------------------------------------- configuration
  const script =
    document.currentScript ||
    document.querySelector('script[src$="widget.js"]') ||
    document.querySelector('script[src*="widget.js?"]');
  const scriptSrc = (script && script.src) || new URL("/widget.js", location.href).href;
  const BASE = new URL("./", scriptSrc); // gateway root (works behind a path prefix too)
  const attr = (name) => (script ? script.getAttribute(name) : null);
  const TITLE = (attr("data-title") || "").trim() || "Chat with us";
  const OPEN_AT_LOAD = (attr("data-open") || "").toLowerCase() === "true";

  const MAX_CHARS = 4000;
  const MAX_BACKOFF_MS = 10000;
  const BASE_BACKOFF_MS = 500;
  const ACCEPT_TIMEOUT_MS = 15000; // no `accepted` this long on an open socket: assume it is dead
  const POST_FALLBACK_AFTER = 3; // failed socket attempts before messages go by POST + polling
  const TYPING_TIMEOUT_MS = 60000;

  const apiUrl = (path) => new URL(path, BASE);
  const wsUrl = () => {
    const u = new URL("ws", BASE);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u;
  };

  // ---------------------------------------------------------------- storage
  const PREFIX = "promptly:";
  const store = (() => {
    const mem = new Map();
    let ls = null;
    try {
      ls = window.localStorage;
      ls.setItem(PREFIX + "probe", "1");
      ls.removeItem(PREFIX + "probe");
    } catch (_) {
      ls = null; // storage disabled: keep state for this page only
    }
    return {
      get(key) {
        try {
          if (ls) return ls.getItem(PREFIX + key);
        } catch (_) { /* fall through */ }
        return mem.has(key) ? mem.get(key) : null;
      },
      set(key, value) {
        mem.set(key, String(value));
        try {
          if (ls) ls.setItem(PREFIX + key, String(value));
        } catch (_) { /* quota or disabled: memory copy is enough */ }
      },
      del(key) {
        mem.delete(key);
        try {
          if (ls) ls.removeItem(PREFIX + key);
        } catch (_) { /* ignore */ }
      },
    };
  })();

  const uuid = () => {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // randomUUID needs a secure context; getRandomValues does not.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };

  // ---------------------------------------------------------------- state
  let customerId = store.get("customer_id");
  if (!customerId || customerId.length > 128) {
    customerId = uuid();
    store.set("customer_id", customerId);
  }
  let conversationId = store.get("conversation_id") || null;
  let seenSeq = Number.parseInt(store.get("last_seq") || "0", 10) || 0; // last seq the customer saw
  let maxSeq = 0; // highest seq rendered on this page
  const profile = {}; // optional name/email from Promptly.identify()

  /** Messages not yet accepted by the gateway, oldest first: {client_message_id, text, sentOn}. */
  let pending = [];
  try {
    const saved = JSON.parse(store.get("pending") || "[]");
    if (Array.isArray(saved)) {
      pending = saved
        .filter((m) => m && typeof m.client_message_id === "string" && typeof m.text === "string")
        .map((m) => ({ client_message_id: m.client_message_id, text: m.text, sentOn: 0 }));
    }
  } catch (_) {
    pending = [];
  }
  const savePending = () => {
    if (pending.length) {
      store.set("pending", JSON.stringify(pending.map(({ client_message_id, text }) => ({ client_message_id, text }))));
    } else {
      store.del("pending");
    }
  };

  const bySeq = new Map(); // seq -> element (dedupe)
  const customerRows = new Map(); // client_message_id -> {row, meta, item}
  const waiting = new Map(); // client_message_id -> timer, for the typing indicator

  let ws = null;
  let socketSerial = 0;
  let socketOpen = false;
  let socketOpenedAt = 0;
  let attempts = 0;
  let reconnectTimer = 0;
  let wantConnection = false;
  let everConnected = false;
  let started = false;
  let isOpen = false;
  let unread = 0;
  let ui = null;

  // ---------------------------------------------------------------- DOM helpers
  const h = (tag, props, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c) node.append(c);
    return node;
  };
  const svg = (paths, size = 24) => {
    const NS = "http://www.w3.org/2000/svg";
    const s = document.createElementNS(NS, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("width", String(size));
    s.setAttribute("height", String(size));
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    for (const d of paths) {
      const p = document.createElementNS(NS, "path");
      p.setAttribute("d", d);
      s.append(p);
    }
    return s;
  };
  const ICON_CHAT = ["M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"];
  const ICON_CLOSE = ["M6 6l12 12M18 6L6 18"];
  const ICON_SEND = ["M3 11.5L21 3l-8.5 18-2.2-7.3L3 11.5z"];

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const dueFmt = new Intl.DateTimeFormat(undefined, {
    weekday: "short", day: "numeric", month: "short", hour: "numeric", minute: "2-digit", timeZoneName: "short",
  });
  const parseDate = (s) => {
    if (typeof s !== "string" || !s) return null;
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? null : d;
  };
  const timeEl = (iso) => {
    const d = parseDate(iso);
    if (!d) return null;
    return h("time", { datetime: iso, title: fullFmt.format(d), text: timeFmt.format(d) });
  };

  /** A safe href for a citation, or null: http(s) absolute, or relative resolving to the gateway. */
  const safeHref = (raw) => {
    if (typeof raw !== "string" || !raw.trim()) return null;
    const value = raw.trim();
    let u;
    try {
      u = new URL(value, BASE);
    } catch (_) {
      return null;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") return null;
    const absolute = /^[a-z][a-z0-9+.-]*:/i.test(value);
    if (!absolute && u.origin !== BASE.origin) return null; // e.g. "//evil.example" or "/\\evil"
    return u.href;
  };

  // ---------------------------------------------------------------- styles
  const CSS = `
/* !important in :host beats even the page's !important rules on the host element. */
:host {
  all: initial !important;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif !important;
  color: #1f2328 !important;
  --accent: var(--promptly-accent, #2f6b3a);
  --accent-ink: var(--promptly-accent-ink, #ffffff);
  --ink: #1f2328; --muted: #6b7280; --line: #e5e7eb; --bg: #f6f7f8;
}
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
button { font: inherit; cursor: pointer; }
:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }

.launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 56px; height: 56px;
  border-radius: 50%; border: 0; background: var(--accent); color: var(--accent-ink);
  display: grid; place-items: center; box-shadow: 0 6px 20px rgba(0,0,0,.22); transition: transform .15s; }
.launcher:hover { transform: scale(1.05); }
.launcher svg { fill: none; stroke: currentColor; stroke-width: 2; stroke-linecap: round; stroke-linejoin: round; }
.badge { position: absolute; top: -2px; right: -2px; min-width: 20px; height: 20px; padding: 0 6px;
  border-radius: 10px; background: #d1242f; color: #fff; font-size: 12px; font-weight: 600;
  line-height: 20px; text-align: center; border: 2px solid #fff; }

.panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000; width: 370px;
  height: min(600px, calc(100vh - 110px)); display: flex; flex-direction: column; background: #fff;
  border-radius: 14px; overflow: hidden; box-shadow: 0 12px 40px rgba(0,0,0,.24); border: 1px solid var(--line); }
@media (max-width: 480px) {
  .panel { right: 0; bottom: 0; width: 100vw; height: 100%; border-radius: 0; border: 0; }
  :host([data-open]) .launcher { display: none; }
}
header { display: flex; align-items: center; gap: 8px; padding: 12px 12px 12px 16px;
  background: var(--accent); color: var(--accent-ink); }
header h2 { flex: 1; margin: 0; font-size: 15px; font-weight: 600; }
.close { width: 32px; height: 32px; border: 0; border-radius: 8px; background: transparent; color: inherit;
  display: grid; place-items: center; }
.close:hover { background: rgba(255,255,255,.15); }
.close svg { fill: none; stroke: currentColor; stroke-width: 2; stroke-linecap: round; }
.status { padding: 6px 12px; font-size: 12px; color: #7a4b00; background: #fff4d6; border-bottom: 1px solid #f3dfa6; }

.log { flex: 1; overflow-y: auto; padding: 14px 12px 8px; background: var(--bg);
  display: flex; flex-direction: column; gap: 8px; overscroll-behavior: contain; }
.hello { margin: auto 8px 4px; color: var(--muted); text-align: center; font-size: 13px; }
.loading { color: var(--muted); text-align: center; font-size: 12px; }

.row { display: flex; flex-direction: column; max-width: 85%; }
.row.me { align-self: flex-end; align-items: flex-end; }
.row.them { align-self: flex-start; align-items: flex-start; }
.bubble { padding: 8px 12px; border-radius: 14px; white-space: pre-wrap; overflow-wrap: anywhere; }
.me .bubble { background: var(--accent); color: var(--accent-ink); border-bottom-right-radius: 4px; }
.them .bubble { background: #fff; border: 1px solid var(--line); border-bottom-left-radius: 4px; }
.row[data-state="pending"] .bubble { opacity: .65; }
.row[data-state="failed"] .bubble { opacity: .8; }
.meta { margin-top: 2px; font-size: 11px; color: var(--muted); display: flex; gap: 6px; align-items: baseline; }
.meta .err { color: #b42318; }
.retry { border: 0; background: none; padding: 0; color: var(--accent); text-decoration: underline; font-size: 11px; }
.who { font-size: 11px; font-weight: 600; color: var(--muted); margin: 0 0 2px 4px; }
.agent .bubble { border-left: 3px solid #7c3aed; }
.agent .who { color: #6d28d9; }

.receipt { margin-top: 3px; font-size: 12px; color: var(--muted); }
.receipt::before { content: "✓ "; }
.receipt.standalone { align-self: flex-end; }

.bubble code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: rgba(0,0,0,.06);
  padding: 0 4px; border-radius: 4px; }
.bubble > a { color: var(--accent); }
.cites { list-style: none; margin: 6px 0 0; padding: 6px 0 0; border-top: 1px solid var(--line);
  font-size: 12.5px; white-space: normal; }
.cites li { margin: 2px 0; }
.cites li::before { content: "↗ "; color: var(--muted); }
.cites a { color: var(--accent); text-decoration: underline; text-underline-offset: 2px; }

.plan { align-self: stretch; margin: 2px 4px; padding: 10px 12px; border-radius: 12px; background: #fffbeb;
  border: 1px solid #f3c969; border-left: 4px solid #d97706; }
.plan .label { font-size: 11px; font-weight: 700; letter-spacing: .04em; text-transform: uppercase; color: #92400e; }
.plan p { margin: 4px 0 8px; white-space: pre-wrap; overflow-wrap: anywhere; }
.plan dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; font-size: 13px; }
.plan dt { color: #92400e; }
.plan dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }

.system { align-self: center; max-width: 90%; text-align: center; color: var(--muted); font-size: 12px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.csat { margin: 6px auto 0; width: max-content; color: var(--ink); }
.csat-row { display: flex; gap: 6px; justify-content: center; }
.csat-btn { width: 34px; height: 34px; border-radius: 50%; border: 1px solid var(--line); background: #fff;
  color: var(--ink); font: inherit; font-weight: 600; cursor: pointer; }
.csat-btn:hover, .csat-btn:focus-visible { border-color: var(--accent); }
.csat-btn[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: var(--accent-ink); }
.csat-btn:disabled { opacity: .6; cursor: default; }
.csat-scale { display: flex; justify-content: space-between; font-size: 11px; margin: 2px 4px 0; }
.csat-status { font-size: 12px; min-height: 1em; }
.csat-comment { display: flex; flex-direction: column; gap: 4px; width: 240px; max-width: 100%; margin: 6px auto 0;
  align-items: stretch; padding: 0; border: 0; background: none; text-align: left; }
.csat-comment label { font-size: 12px; font-weight: 600; }
.csat-comment-row { display: flex; gap: 6px; }
.csat-comment input { flex: 1; min-width: 0; padding: 5px 8px; border: 1px solid #d0d7de; border-radius: 8px;
  font: inherit; font-size: 13px; color: inherit; background: #fff; }
.csat-comment input:focus { outline: none; border-color: var(--accent); }
.csat-comment button { flex: none; padding: 5px 10px; border: 0; border-radius: 8px; background: var(--accent);
  color: var(--accent-ink); font-size: 13px; }
.csat-comment button:disabled { opacity: .45; cursor: default; }
.choices { display: flex; flex-direction: column; gap: 4px; margin-top: 6px; }
.choice-btn { text-align: left; padding: 6px 10px; border-radius: 10px; border: 1px solid var(--line); background: #fff; color: var(--ink); cursor: pointer; font: inherit; }
.choice-btn:hover, .choice-btn:focus-visible { border-color: var(--accent); }

.typing { align-self: flex-start; display: flex; gap: 4px; padding: 10px 12px; background: #fff;
  border: 1px solid var(--line); border-radius: 14px; border-bottom-left-radius: 4px; }
.typing span { width: 6px; height: 6px; border-radius: 50%; background: #9ca3af; animation: blink 1.2s infinite; }
.typing span:nth-child(2) { animation-delay: .2s; }
.typing span:nth-child(3) { animation-delay: .4s; }
@keyframes blink { 0%, 80%, 100% { opacity: .3; } 40% { opacity: 1; } }
@media (prefers-reduced-motion: reduce) { .typing span { animation: none; } .launcher { transition: none; } }

form { display: flex; align-items: flex-end; gap: 8px; padding: 10px; border-top: 1px solid var(--line); background: #fff; }
textarea { flex: 1; resize: none; min-height: 38px; max-height: 120px; padding: 8px 10px; border: 1px solid #d0d7de;
  border-radius: 10px; font: inherit; color: inherit; background: #fff; }
textarea:focus { outline: none; border-color: var(--accent); box-shadow: 0 0 0 3px rgba(47,107,58,.15); }
.send { width: 38px; height: 38px; flex: none; border: 0; border-radius: 10px; background: var(--accent);
  color: var(--accent-ink); display: grid; place-items: center; }
.send:disabled { opacity: .45; cursor: default; }
.send svg { fill: currentColor; }
/* In the flow under the composer (never over the text it counts). */
.counter { display: block; padding: 0 56px 6px 10px; background: #fff; font-size: 11px; color: var(--muted);
  text-align: right; }
.counter.over { color: #b42318; font-weight: 600; }
.foot { padding: 0 10px 8px; background: #fff; font-size: 11px; color: var(--muted); text-align: center; }
`;

  // ---------------------------------------------------------------- UI
  function mount() {
    if (ui) return ui;
    const host = h("div", { id: "promptly-widget", "data-promptly": "" });
    const root = host.attachShadow({ mode: "open" });

    const badge = h("span", { class: "badge", hidden: true, "aria-hidden": "true" });
    const launcher = h(
      "button",
      {
        class: "launcher", type: "button", "data-testid": "promptly-launcher",
        "aria-label": "Open support chat", "aria-expanded": "false", "aria-controls": "promptly-panel",
        onclick: () => (isOpen ? close() : open(true)),
      },
      svg(ICON_CHAT, 26),
      badge,
    );

    const status = h("div", { class: "status", role: "status", hidden: true });
    const hello = h("p", { class: "hello", text: "Hi! Ask us anything — we reply in seconds, and tell you when a person will take over." });
    const loading = h("p", { class: "loading", text: "Loading your conversation…", hidden: true });
    const log = h(
      "div",
      { class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Messages", tabindex: "0" },
      hello,
      loading,
    );
    const typing = h("div", { class: "typing", hidden: true, "aria-hidden": "true" }, h("span"), h("span"), h("span"));
    log.append(typing);

    const input = h("textarea", {
      // No maxlength: it would cut a long paste silently; the counter says what is too much.
      id: "promptly-input", "data-testid": "promptly-input", rows: "1", "aria-describedby": "promptly-counter",
      placeholder: "Type your message…", autocomplete: "off", enterkeyhint: "send",
    });
    const sendBtn = h("button", { class: "send", type: "submit", "data-testid": "promptly-send", "aria-label": "Send message" }, svg(ICON_SEND, 18));
    const counter = h("div", { class: "counter", id: "promptly-counter", "data-testid": "promptly-counter", hidden: true, "aria-live": "polite" });
    const form = h(
      "form",
      { "aria-label": "Send a message" },
      h("label", { for: "promptly-input", class: "sr-only", text: "Your message" }),
      input,
      sendBtn,
    );
    const titleId = "promptly-title";
    const panel = h(
      "section",
      { class: "panel", id: "promptly-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": titleId, hidden: true },
      h(
        "header",
        {},
        h("h2", { id: titleId, text: TITLE }),
        h("button", { class: "close", type: "button", "aria-label": "Close chat", onclick: () => close(true) }, svg(ICON_CLOSE, 18)),
      ),
      status,
      log,
      form,
      counter,
      h("div", { class: "foot", text: "Powered by Promptly" }),
    );

    const updateComposer = () => {
      const n = [...input.value].length;
      const over = n > MAX_CHARS;
      sendBtn.disabled = !input.value.trim() || over;
      counter.hidden = n < MAX_CHARS - 500;
      counter.textContent = over
        ? `${n} / ${MAX_CHARS}: too long to send, please shorten it`
        : `${n} / ${MAX_CHARS}`;
      counter.classList.toggle("over", over);
      if (over) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
      input.style.height = "auto";
      input.style.height = `${Math.min(input.scrollHeight + 2, 120)}px`;
    };
    input.addEventListener("input", updateComposer);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = input.value;
      if (!text.trim() || [...text].length > MAX_CHARS) return;
      input.value = "";
      updateComposer();
      send(text);
      input.focus();
    });
    panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        close(true);
      }
    });

    const style = h("style", { text: CSS });
    root.append(style, launcher, panel);
    document.body.append(host);
    updateComposer();
    ui = { host, root, launcher, badge, panel, status, log, hello, loading, typing, input, sendBtn };
    return ui;
  }

  function setStatus(text) {
    if (!ui) return;
    ui.status.hidden = !text;
    ui.status.textContent = text || "";
  }

  function updateBadge() {
    if (!ui) return;
    ui.badge.hidden = unread === 0;
    ui.badge.textContent = unread > 9 ? "9+" : String(unread);
    ui.launcher.setAttribute(
      "aria-label",
      isOpen ? "Close support chat" : unread ? `Open support chat, ${unread} unread` : "Open support chat",
    );
  }

  function markSeen() {
    if (!isOpen || document.visibilityState === "hidden") return;
    unread = 0;
    if (maxSeq > seenSeq) {
      seenSeq = maxSeq;
      store.set("last_seq", seenSeq);
    }
    updateBadge();
  }

  const nearBottom = () => !ui || ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80;
  const scrollToEnd = () => {
    if (ui) ui.log.scrollTop = ui.log.scrollHeight;
  };

  /** Insert a message row in seq order; rows without seq (not yet stored) keep arrival order. */
  function place(node, seq) {
    const log = ui.log;
    const stick = nearBottom();
    ui.hello.hidden = true;
    let before = ui.typing;
    if (typeof seq === "number") {
      // Before the first later stored row, or before the first message still waiting to be
      // stored (it will get a higher seq than anything stored now).
      for (const child of log.children) {
        const s = Number.parseInt(child.dataset.seq || "", 10);
        if ((!Number.isNaN(s) && s > seq) || (Number.isNaN(s) && child.dataset.state === "pending")) {
          before = child;
          break;
        }
      }
    }
    log.insertBefore(node, before);
    if (stick) scrollToEnd();
  }

  function msgAttrs(type, kind, seq, extraClass) {
    const a = { class: extraClass, "data-testid": "promptly-msg", "data-type": type, "data-kind": kind || "" };
    if (typeof seq === "number") a["data-seq"] = String(seq);
    return a;
  }

  function citationsList(citations) {
    if (!Array.isArray(citations) || !citations.length) return null;
    const ul = h("ul", { class: "cites", "aria-label": "Sources" });
    for (const c of citations) {
      if (!c || typeof c !== "object") continue;
      const href = safeHref(c.url);
      const title = typeof c.title === "string" && c.title.trim() ? c.title.trim() : href || "";
      if (!title) continue;
      const li = h("li");
      li.append(href ? h("a", { href, target: "_blank", rel: "noopener", text: title }) : document.createTextNode(title));
      ul.append(li);
    }
    return ul.childElementCount ? ul : null;
  }

  function textOf(f) {
    return typeof f.text === "string" ? f.text : "";
  }

  /** Bot and agent text with a tiny Markdown subset (**bold**, `code`, [text](url)), built
   * from text nodes and elements: the text never goes through an HTML parser. */
  const INLINE = /(\*\*[^*\n]+\*\*|`[^`\n]+`|\[[^\]\n]+\]\([^)\s]+\))/g;
  function richText(text) {
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) frag.append(text.slice(last, m.index));
      const token = m[0];
      if (token.startsWith("**")) {
        frag.append(h("strong", { text: token.slice(2, -2) }));
      } else if (token.startsWith("`")) {
        frag.append(h("code", { text: token.slice(1, -1) }));
      } else {
        const close = token.indexOf("](");
        const label = token.slice(1, close);
        const href = safeHref(token.slice(close + 2, -1));
        frag.append(href ? h("a", { href, target: "_blank", rel: "noopener", text: label }) : token);
      }
      last = m.index + token.length;
    }
    if (last < text.length) frag.append(text.slice(last));
    return frag;
  }

  /** The answer's closing "Source: <title>" line is for text-only channels; here the
   * citation list under it names and links the same article, so the line goes. */
  const SOURCE_LINE = /\n\nSource: ([^\n]+)$/;
  function withoutSourceLine(text, cites) {
    const m = SOURCE_LINE.exec(text);
    if (!m || !cites) return text;
    const listed = Array.from(cites.querySelectorAll("li"), (li) => li.textContent.trim());
    return listed.includes(m[1].trim()) ? text.slice(0, m.index) : text;
  }

  function textBubble(f) {
    const cites = citationsList(f.citations);
    const bubble = h("div", { class: "bubble" }, richText(withoutSourceLine(textOf(f), cites)));
    if (cites) bubble.append(cites);
    return bubble;
  }

  // customer rows: one per client_message_id, shared by local sends and stored frames
  function customerRow(cmid, text, seq, createdAt) {
    const meta = h("div", { class: "meta" });
    const row = h(
      "div",
      msgAttrs("customer", "", seq, "row me"),
      h("div", { class: "bubble", text }),
      meta,
    );
    if (cmid) row.dataset.clientMessageId = cmid;
    const entry = { row, meta, createdAt };
    if (cmid) customerRows.set(cmid, entry);
    place(row, seq);
    return entry;
  }

  function setCustomerState(entry, state, errorText, retryItem) {
    entry.row.dataset.state = state;
    entry.meta.replaceChildren();
    if (state === "pending") {
      entry.meta.append(h("span", { text: socketOpen ? "Sending…" : "Waiting for connection…" }));
    } else if (state === "sent") {
      const t = timeEl(entry.createdAt);
      entry.meta.append(h("span", { text: "Sent" }));
      if (t) entry.meta.append(t);
    } else if (state === "failed") {
      entry.meta.append(h("span", { class: "err", role: "alert", text: errorText || "Not sent." }));
      if (retryItem) {
        entry.meta.append(h("button", { class: "retry", type: "button", text: "Retry", onclick: () => retry(retryItem) }));
      }
    }
  }

  function showTyping() {
    if (!ui) return;
    ui.typing.hidden = waiting.size === 0;
    if (!ui.typing.hidden && nearBottom()) scrollToEnd();
  }
  function waitFor(cmid) {
    clearTimeout(waiting.get(cmid));
    waiting.set(cmid, setTimeout(() => { waiting.delete(cmid); showTyping(); }, TYPING_TIMEOUT_MS));
    showTyping();
  }
  function doneWaiting(cmid) {
    if (!waiting.has(cmid)) return;
    clearTimeout(waiting.get(cmid));
    waiting.delete(cmid);
    showTyping();
  }

  /** Render one stored conversation frame (from history or the socket), once per seq. */
  function renderFrame(f) {
    if (!f || typeof f !== "object" || typeof f.seq !== "number" || !Number.isFinite(f.seq)) return;
    if (f.conversation_id && conversationId && f.conversation_id !== conversationId) return;
    if (bySeq.has(f.seq)) return;
    mount();
    const seq = f.seq;
    const type = String(f.type || "");
    let node = null;

    if (type === "customer") {
      const cmid = typeof f.client_message_id === "string" ? f.client_message_id : null;
      let entry = cmid ? customerRows.get(cmid) : null;
      if (entry) {
        entry.row.dataset.seq = String(seq);
        entry.createdAt = f.created_at || entry.createdAt;
      } else {
        entry = customerRow(cmid, textOf(f), seq, f.created_at);
      }
      if (cmid) dropPending(cmid);
      setCustomerState(entry, "sent");
      node = entry.row;
    } else if (type === "ack" && f.kind === "receipt") {
      const entry = f.in_reply_to ? customerRows.get(f.in_reply_to) : null;
      if (entry && entry.receipt) {
        // The receipt sent from memory while the database was away, stored now: the same one.
        node = entry.receipt;
        entry.receipt = null;
        node.dataset.seq = String(seq);
        delete node.dataset.journaled;
        bySeq.set(seq, node);
        if (seq > maxSeq) maxSeq = seq;
        return;
      }
      node = h("div", msgAttrs("ack", "receipt", seq, entry ? "receipt" : "receipt standalone"), h("span", { text: textOf(f) || "Received — working on it…" }));
      if (entry) {
        entry.row.append(node);
        if (nearBottom()) scrollToEnd();
      } else {
        place(node, seq);
      }
    } else if (type === "ack" && f.kind === "plan") {
      const dl = h("dl");
      const add = (label, value) => {
        if (value === null || value === undefined || value === "") return;
        dl.append(h("dt", { text: label }), h("dd", {}, value instanceof Node ? value : document.createTextNode(String(value))));
      };
      const queue = [f.queue_name, f.queue].find((q) => typeof q === "string" && q.trim());
      add("Queue", queue || null);
      add("Reference", typeof f.reference === "string" ? f.reference : null);
      const due = parseDate(f.expected_reply_by);
      add("Expected reply by", due ? h("time", { datetime: f.expected_reply_by, text: dueFmt.format(due) }) : f.expected_reply_by);
      node = h(
        "div",
        msgAttrs("ack", "plan", seq, "plan"),
        // An agent already talking with them: "With Alex", not "passed to our team" again.
        h("div", { class: "label", text: f.agent && typeof f.agent.name === "string" && f.agent.name.trim() ? `With ${f.agent.name.trim()}` : "Passed to our team" }),
        h("p", { text: textOf(f) }),
        dl,
      );
      place(node, seq);
    } else if (type === "ack" || type === "answer") {
      markRated(f.rated);
      const bubble = textBubble(f);
      const t = timeEl(f.created_at);
      node = h("div", msgAttrs(type, type === "ack" ? f.kind : "", seq, "row them bot"), bubble, choicesPrompt(f), t ? h("div", { class: "meta" }, t) : null);
      place(node, seq);
    } else if (type === "agent") {
      const name = f.agent && typeof f.agent.name === "string" && f.agent.name.trim() ? f.agent.name.trim() : "Support agent";
      const bubble = textBubble(f);
      const t = timeEl(f.created_at);
      node = h("div", msgAttrs("agent", "", seq, "row them agent"), h("div", { class: "who", text: name }), bubble, t ? h("div", { class: "meta" }, t) : null);
      place(node, seq);
    } else {
      // "system" and any type a newer gateway may add: shown as a neutral line
      node = h("div", msgAttrs(type || "system", f.kind || "", seq, "system"), h("span", { text: textOf(f) }), csatPrompt(f));
      place(node, seq);
    }

    bySeq.set(seq, node);
    if (seq > maxSeq) maxSeq = seq;
    if (f.in_reply_to && (type === "answer" || type === "agent" || (type === "ack" && f.kind !== "receipt"))) {
      doneWaiting(f.in_reply_to);
    }
    if (type !== "customer" && seq > seenSeq) {
      if (isOpen && document.visibilityState !== "hidden") markSeen();
      else {
        unread += 1;
        updateBadge();
      }
    } else if (isOpen) {
      markSeen();
    }
  }

  // ---------------------------------------------------------------- article choices
  /** Buttons for the articles the bot offers (frame field `choices`): a tap sends its number,
   * as a customer on any other channel would write it. */
  function choicesPrompt(f) {
    if (!Array.isArray(f.choices)) return null;
    const titles = f.choices.slice(0, 3).map((c) => (c && typeof c.title === "string" ? c.title : "")).filter(Boolean);
    if (!titles.length) return null;
    return h(
      "div",
      { class: "choices", role: "group", "aria-label": "Articles to choose from", "data-testid": "promptly-choices" },
      ...titles.map((title, i) =>
        h("button", { type: "button", class: "choice-btn", "data-choice": String(i + 1), text: `${i + 1}. ${title}`, onclick: () => send(String(i + 1)) }),
      ),
    );
  }

  // ---------------------------------------------------------------- satisfaction rating
  const MAX_COMMENT = 1000; // as the rating API allows
  let csatSerial = 0; // unique ids for the comment fields' labels
  const csatShown = new Map(); // ticket id -> marks a rating given as a typed message

  /** A rating the customer typed ("4 - quick and kind"): the reply says so (`rated`), and the
   * buttons of that request show it as if tapped. */
  function markRated(rated) {
    if (!rated || typeof rated.ticket_id !== "string" || !Number.isInteger(rated.rating)) return;
    store.set("csat:" + rated.ticket_id, rated.rating);
    const mark = csatShown.get(rated.ticket_id);
    if (mark) mark(rated.rating);
  }

  /** One-tap 1–5 buttons when a resolved request asks for a rating (frame field `csat`); after
   * a tap, an optional comment field. */
  function csatPrompt(f) {
    const c = f.csat;
    if (!c || typeof c !== "object" || typeof c.ticket_id !== "string" || !Array.isArray(c.scale)) return null;
    const scale = c.scale.filter((n) => Number.isInteger(n) && n >= 0 && n <= 10);
    if (!scale.length) return null;
    const labels = c.labels && typeof c.labels === "object" ? c.labels : {};
    const label = (n) => (typeof labels[String(n)] === "string" ? labels[String(n)] : "");
    const convId = f.conversation_id || conversationId;
    const ticketId = c.ticket_id;
    // A rating replaces the one before, comment included: later taps resend the comment sent.
    let rating = Number.parseInt(store.get("csat:" + ticketId) || "", 10);
    let comment = store.get("csat-comment:" + ticketId);
    const status = h("div", { class: "csat-status", role: "status" });
    const buttons = scale.map((n) =>
      h("button", {
        type: "button",
        class: "csat-btn",
        "data-testid": "promptly-csat-rating",
        "data-rating": String(n),
        "aria-pressed": String(n === rating),
        "aria-label": label(n) ? `${n}: ${label(n)}` : String(n),
        text: String(n),
        onclick: () => tap(n),
      }),
    );
    const fieldId = `promptly-csat-comment-${(csatSerial += 1)}`;
    const field = h("input", { type: "text", id: fieldId, "data-testid": "promptly-csat-comment", autocomplete: "off" });
    const sendComment = h("button", { type: "submit", "data-testid": "promptly-csat-comment-send", text: "Send", disabled: true });
    const form = h(
      "form",
      { class: "csat-comment", "aria-label": "Comment on your rating", hidden: true },
      h("label", { for: fieldId, text: "Anything to add?" }),
      h("div", { class: "csat-comment-row" }, field, sendComment),
    );
    const tooMany = () => [...field.value].length - MAX_COMMENT;
    const updateSend = () => {
      sendComment.disabled = !field.value.trim() || tooMany() > 0;
    };
    // No maxlength, which would cut a pasted comment silently: say what is too much instead.
    let limitShown = false;
    field.addEventListener("input", () => {
      updateSend();
      const over = tooMany();
      if (over > 0) status.textContent = `Too long to send: ${MAX_COMMENT + over} / ${MAX_COMMENT} characters.`;
      else if (limitShown) status.textContent = "";
      limitShown = over > 0;
    });

    const post = async (value, text, thanks) => {
      for (const b of [...buttons, sendComment]) b.disabled = true;
      const error = await postRating(convId, ticketId, value, text);
      for (const b of buttons) b.disabled = false;
      updateSend();
      limitShown = false;
      status.textContent = error || thanks;
      return !error;
    };
    const press = (n) => {
      rating = n;
      for (const b of buttons) b.setAttribute("aria-pressed", String(Number(b.dataset.rating) === n));
    };
    csatShown.set(ticketId, press);
    async function tap(n) {
      if (!(await post(n, comment, "Thanks for your rating!"))) return;
      press(n);
      store.set("csat:" + ticketId, n);
      if (!comment) form.hidden = false;
    }
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = field.value.trim();
      if (!text || tooMany() > 0 || !Number.isInteger(rating)) return;
      if (!(await post(rating, text, "Thanks, we've passed your comment on."))) return;
      comment = text;
      store.set("csat-comment:" + ticketId, text);
      form.hidden = true;
    });
    return h(
      "div",
      { class: "csat", role: "group", "aria-label": "Rate the help you got", "data-testid": "promptly-csat" },
      h("div", { class: "csat-row" }, ...buttons),
      h("div", { class: "csat-scale" }, h("span", { text: label(scale[0]) }), h("span", { text: label(scale[scale.length - 1]) })),
      status,
      form,
    );
  }

  /** Post a rating (and its optional comment) with this client's credentials; a later one
   * replaces it. Resolves to null when stored, else the message to show. */
  async function postRating(convId, ticketId, rating, comment) {
    if (!convId) return "Your rating could not be sent.";
    const payload = { customer_id: customerId, ticket_id: ticketId, rating };
    if (comment) payload.comment = comment;
    try {
      const r = await fetch(apiUrl(`api/conversations/${encodeURIComponent(convId)}/csat`).href, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(payload),
        credentials: "omit",
      });
      if (r.ok) return null;
      const data = await r.json().catch(() => null);
      return (data && data.error && data.error.message) || "Your rating could not be sent.";
    } catch (_) {
      return "Your rating could not be sent. Please try again.";
    }
  }

  // ---------------------------------------------------------------- conversation & sending
  /** Seqs are per conversation: rows of a previous one stay on screen but leave the numbering. */
  function resetSeqs() {
    for (const node of bySeq.values()) node.removeAttribute("data-seq");
    bySeq.clear();
    maxSeq = 0;
    seenSeq = 0;
    store.set("last_seq", 0);
  }

  function setConversation(id) {
    if (!id || id === conversationId) return;
    const switching = conversationId !== null;
    conversationId = id;
    store.set("conversation_id", id);
    if (switching) {
      // The gateway moved us to another conversation (the old one was closed): follow it.
      resetSeqs();
      reconnectNow();
    }
  }

  function forgetConversation() {
    conversationId = null;
    store.del("conversation_id");
    resetSeqs();
  }

  function dropPending(cmid) {
    const before = pending.length;
    pending = pending.filter((m) => m.client_message_id !== cmid);
    if (pending.length !== before) savePending();
  }

  function body(item) {
    const customer = { id: customerId };
    if (profile.name) customer.name = profile.name;
    if (profile.email) customer.email = profile.email;
    const b = { client_message_id: item.client_message_id, text: item.text, customer };
    if (conversationId) b.conversation_id = conversationId;
    return b;
  }

  /** Send what is pending over the open socket (each message once per socket). */
  function flush() {
    if (!ws || !socketOpen) return;
    for (const item of pending) {
      if (item.sentOn === socketSerial) continue;
      // Until the gateway has told us our conversation, send one message at a time so that
      // a burst cannot open two conversations.
      if (!conversationId && pending.some((m) => m !== item && m.sentOn === socketSerial)) break;
      try {
        ws.send(JSON.stringify(body(item)));
      } catch (_) {
        return; // socket is going away; the next one resends
      }
      item.sentOn = socketSerial;
      const sock = ws;
      clearTimeout(item.timer);
      item.timer = setTimeout(() => {
        if (ws === sock && pending.includes(item)) sock.close(4000, "no accepted"); // half-open socket
      }, ACCEPT_TIMEOUT_MS);
      const entry = customerRows.get(item.client_message_id);
      if (entry && entry.row.dataset.state === "pending") setCustomerState(entry, "pending");
      if (!conversationId) break;
    }
  }

  function send(text) {
    const value = String(text === undefined || text === null ? "" : text);
    if (!value.trim()) return null;
    mount();
    const item = { client_message_id: uuid(), text: value, sentOn: 0 };
    pending.push(item);
    savePending();
    const entry = customerRow(item.client_message_id, value, undefined, new Date().toISOString());
    setCustomerState(entry, "pending");
    scrollToEnd();
    waitFor(item.client_message_id);
    if (!started) start();
    else flush();
    if (started && !ws) connectSoon(true);
    return item.client_message_id;
  }

  function retry(item) {
    item.sentOn = 0;
    item.retriedConversation = false;
    if (!pending.includes(item)) pending.push(item);
    savePending();
    const entry = customerRows.get(item.client_message_id);
    if (entry) setCustomerState(entry, "pending");
    waitFor(item.client_message_id);
    if (ws) flush();
    else connectSoon(true);
  }

  function onAccepted(cmid, conversation, receipt) {
    const item = pending.find((m) => m.client_message_id === cmid);
    if (item) clearTimeout(item.timer);
    dropPending(cmid);
    if (conversation) setConversation(conversation);
    const entry = customerRows.get(cmid);
    if (entry && entry.row.dataset.state !== "sent") setCustomerState(entry, "sent");
    if (receipt) provisionalReceipt(cmid, receipt);
    flush();
  }

  /** A receipt sent from memory while the database is away (with `accepted`, or a frame with
   *  `provisional: true` and no seq): shown under the message until the stored one adopts it. */
  function provisionalReceipt(cmid, receipt) {
    const entry = cmid ? customerRows.get(cmid) : null;
    if (!entry || entry.receipt || typeof receipt.text !== "string") return;
    if (entry.row.querySelector('[data-kind="receipt"]')) return; // the stored one is here already
    const node = h("div", { class: "receipt", "data-testid": "promptly-msg", "data-type": "ack", "data-kind": "receipt", "data-journaled": "1" }, h("span", { text: receipt.text }));
    entry.receipt = node;
    entry.row.append(node);
    if (nearBottom()) scrollToEnd();
  }

  function onSendError(cmid, error) {
    const item = pending.find((m) => m.client_message_id === cmid);
    const code = error && error.code;
    if (item && (code === "unknown_conversation" || code === "conversation_mismatch") && !item.retriedConversation) {
      // Our stored conversation is gone (or not ours): start a new one and resend once.
      item.retriedConversation = true;
      item.sentOn = 0;
      forgetConversation();
      reconnectNow();
      return;
    }
    if (item) clearTimeout(item.timer);
    dropPending(cmid);
    doneWaiting(cmid);
    const entry = customerRows.get(cmid);
    const message = (error && typeof error.message === "string" && error.message) || "This message could not be sent.";
    if (entry) setCustomerState(entry, "failed", message, code === "validation_error" ? null : item || { client_message_id: cmid, text: entry.row.firstChild.textContent, sentOn: 0 });
  }

  /** Refused for coming too fast (nothing was stored): keep it pending, send it after the wait. */
  function onRateLimited(cmid, error) {
    const item = pending.find((m) => m.client_message_id === cmid);
    if (!item) return;
    clearTimeout(item.timer);
    setStatus("Slow down a little — too many messages at once.");
    const seconds = Math.max(1, Number(error.retry_after) || 1);
    item.timer = setTimeout(() => {
      item.sentOn = 0;
      if (socketOpen) setStatus("");
      flush();
    }, seconds * 1000);
  }

  // ---------------------------------------------------------------- socket
  function handleFrame(f) {
    if (!f || typeof f !== "object") return;
    if (f.type === "accepted") {
      if (typeof f.client_message_id === "string") onAccepted(f.client_message_id, f.conversation_id, f.journaled ? f.receipt : null);
    } else if (f.type === "error") {
      if (typeof f.client_message_id === "string" && f.client_message_id) {
        if (f.error && f.error.code === "rate_limited") onRateLimited(f.client_message_id, f.error);
        else onSendError(f.client_message_id, f.error);
      } else {
        const code = f.error && f.error.code;
        if (code === "unknown_conversation" || code === "conversation_mismatch") {
          forgetConversation();
          reconnectNow();
        } else if (code === "rate_limited") {
          setStatus("Slow down a little — too many messages at once.");
          setTimeout(() => socketOpen && setStatus(""), 4000);
        }
      }
    } else if (f.provisional === true && f.type === "ack" && f.kind === "receipt") {
      if (!f.conversation_id || !conversationId || f.conversation_id === conversationId) provisionalReceipt(f.in_reply_to, f);
    } else {
      renderFrame(f);
    }
  }

  function connect() {
    if (ws || !wantConnection) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    const u = wsUrl();
    u.searchParams.set("customer_id", customerId);
    if (conversationId) {
      u.searchParams.set("conversation_id", conversationId);
      u.searchParams.set("after", String(maxSeq));
    }
    let sock;
    try {
      sock = new WebSocket(u.href);
    } catch (_) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    socketSerial += 1;
    socketOpen = false;
    sock.addEventListener("open", () => {
      if (ws !== sock) return;
      socketOpen = true;
      everConnected = true;
      socketOpenedAt = Date.now();
      setStatus("");
      flush();
    });
    sock.addEventListener("message", (ev) => {
      if (ws !== sock) return;
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      handleFrame(f);
    });
    sock.addEventListener("close", (ev) => {
      if (ws !== sock) return;
      const lived = socketOpen ? Date.now() - socketOpenedAt : 0;
      ws = null;
      socketOpen = false;
      if (lived > 5000) attempts = 0; // a socket that stayed up a while resets the backoff
      for (const item of pending) clearTimeout(item.timer);
      // 4408: closed as idle (no conversation yet, nothing sent); the next send reconnects.
      if (ev.code === 4408 && !pending.length) return;
      if (wantConnection) scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (reconnectTimer || !wantConnection) return;
    attempts += 1;
    const ceiling = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** (attempts - 1));
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2)); // "equal jitter"
    setStatus(navigator.onLine === false ? "You're offline — messages will be sent when you're back." : everConnected ? "Reconnecting…" : "Connecting…");
    for (const item of pending) {
      const entry = customerRows.get(item.client_message_id);
      if (entry && entry.row.dataset.state === "pending") setCustomerState(entry, "pending");
    }
    if (attempts >= POST_FALLBACK_AFTER) fallback();
    reconnectTimer = setTimeout(() => {
      reconnectTimer = 0;
      connect();
    }, delay);
  }

  function connectSoon(resetBackoff) {
    if (!wantConnection || ws) return;
    if (resetBackoff) attempts = 0;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    connect();
  }

  function reconnectNow() {
    const old = ws;
    ws = null;
    socketOpen = false;
    if (old) {
      try {
        old.close(1000, "reconnect");
      } catch (_) { /* ignore */ }
    }
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    connect();
  }

  // ---------------------------------------------------------------- REST (history + fallback)
  async function getJSON(url) {
    const r = await fetch(url.href, { headers: { Accept: "application/json" }, credentials: "omit", cache: "no-store" });
    let data = null;
    try {
      data = await r.json();
    } catch (_) {
      data = null;
    }
    return { status: r.status, ok: r.ok, data };
  }

  /** Load stored frames after `after`; forgets the conversation if the gateway disowns it. */
  async function loadHistory(after) {
    if (!conversationId) return;
    const id = conversationId;
    const u = apiUrl(`api/web/conversations/${encodeURIComponent(id)}/messages`);
    u.searchParams.set("customer_id", customerId);
    u.searchParams.set("after", String(after));
    const r = await getJSON(u);
    if (id !== conversationId) return;
    if (r.ok && r.data && Array.isArray(r.data.messages)) {
      for (const f of r.data.messages) renderFrame(f);
    } else if (r.status === 404 || r.status === 403) {
      forgetConversation();
    }
  }

  /** The socket keeps failing: store pending messages by POST and poll for replies. */
  let fallbackBusy = false;
  async function fallback() {
    if (fallbackBusy) return;
    fallbackBusy = true;
    try {
      for (const item of [...pending]) {
        if (!conversationId && item !== pending[0]) break;
        const r = await fetch(apiUrl("api/web/messages").href, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify(body(item)),
          credentials: "omit",
        });
        const data = await r.json().catch(() => null);
        if (r.status === 202 && data) onAccepted(item.client_message_id, data.conversation_id, data.journaled ? data.receipt : null);
        else if (r.status >= 400 && r.status < 500 && r.status !== 429 && data && data.error) onSendError(item.client_message_id, data.error);
        else break;
      }
      await loadHistory(maxSeq);
    } catch (_) {
      /* network still down: the next backoff tick tries again */
    } finally {
      fallbackBusy = false;
    }
  }

  async function start() {
    if (started) return;
    started = true;
    mount();
    if (conversationId) {
      ui.loading.hidden = false;
      ui.hello.hidden = true;
      try {
        await loadHistory(0);
      } catch (_) {
        /* offline: the socket replays from after=0 when it connects */
      }
      ui.loading.hidden = true;
    }
    // Messages typed before a reload that the gateway never acknowledged: show and resend.
    for (const item of pending) {
      if (!customerRows.has(item.client_message_id)) {
        const entry = customerRow(item.client_message_id, item.text, undefined, null);
        setCustomerState(entry, "pending");
      }
    }
    if (!bySeq.size && !customerRows.size) ui.hello.hidden = false;
    scrollToEnd();
    wantConnection = true;
    connect();
  }

  // ---------------------------------------------------------------- open / close
  function open(focus) {
    mount();
    isOpen = true;
    ui.panel.hidden = false;
    ui.host.setAttribute("data-open", "");
    ui.launcher.setAttribute("aria-expanded", "true");
    markSeen();
    updateBadge();
    scrollToEnd();
    if (focus) ui.input.focus({ preventScroll: true });
    start();
  }

  function close(returnFocus) {
    if (!ui) return;
    isOpen = false;
    ui.panel.hidden = true;
    ui.host.removeAttribute("data-open");
    ui.launcher.setAttribute("aria-expanded", "false");
    updateBadge();
    if (returnFocus) ui.launcher.focus();
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      markSeen();
      connectSoon(true);
    }
  });
  window.addEventListener("online", () => connectSoon(true));
  window.addEventListener("offline", () => {
    if (wantConnection && !socketOpen) setStatus("You're offline — messages will be sent when you're back.");
  });

  // ---------------------------------------------------------------- boot
  const whenReady = (fn) => {
    if (document.body) fn();
    else document.addEventListener("DOMContentLoaded", fn, { once: true });
  };

  window.Promptly = Object.freeze({
    __promptly: true,
    version: "1",
    open: () => whenReady(() => open(true)),
    close: () => whenReady(() => close(false)),
    /** Send a message as the customer; returns its client_message_id (null for blank text). */
    send: (text) => {
      if (!document.body) {
        whenReady(() => {
          if (!isOpen) open(false);
          send(text);
        });
        return null;
      }
      if (!isOpen) open(false);
      return send(text);
    },
    /** Optional: the customer's name and email, sent with their next messages. */
    identify: (info) => {
      if (info && typeof info.name === "string") profile.name = info.name.slice(0, 200);
      if (info && typeof info.email === "string") profile.email = info.email.slice(0, 320);
    },
  });

  whenReady(() => {
    mount();
    if (OPEN_AT_LOAD) open(false);
    else if (conversationId || pending.length) start(); // returning customer: catch up in the background
  });
})();
