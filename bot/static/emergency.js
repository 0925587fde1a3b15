// The emergency switch on every console page: a banner while it is on (or while the gateway
// is overloaded, or Rasa or the knowledge base is down), and for leads and admins the controls. It reads /api/console/emergency every few seconds, so a change made
// elsewhere (another lead, the CLI) shows up here too. Text only: nothing is parsed as HTML.
(() => {
  "use strict";
  const box = document.getElementById("emergency");
  if (!box) return;
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const CAN_SET = box.dataset.canSet === "yes";
  const MODES = { normal: "Normal", all_to_humans: "All to humans", bot_only: "Bot only" };
  const POLL_MS = 5000;
  let state = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "testid") node.dataset.testid = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  async function request(method, path, body) {
    const r = await fetch(path, {
      method,
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    const data = await r.json().catch(() => null);
    if (!r.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${r.status}`);
    return data;
  }

  function summary(s) {
    const parts = [];
    if (s.mode !== "normal") parts.push(MODES[s.mode] || s.mode);
    if (s.paused_channels.length) parts.push(`paused: ${s.paused_channels.join(", ")}`);
    let line = `Emergency switch on: ${parts.join("; ")}`;
    if (s.by) line += ` (by ${s.by}${s.reason ? `: ${s.reason}` : ""})`;
    return line;
  }

  /** Switching the bot off or pausing a channel: a reason (everyone sees it) and a yes. */
  function confirmed(what, reason) {
    if (!reason.value.trim()) {
      reason.setCustomValidity(`Say why before ${what}: everyone sees the reason.`);
      reason.reportValidity();
      reason.addEventListener("input", () => reason.setCustomValidity(""), { once: true });
      return false;
    }
    return window.confirm(`${what[0].toUpperCase()}${what.slice(1)}? Customers are affected at once.`);
  }

  function controls(s) {
    const reason = el("input", { type: "text", id: "emergency-reason", maxlength: "500", placeholder: "required to switch off or pause", testid: "emergency-reason" });
    const label = el("label", { for: "emergency-reason" }, "Reason (shown to everyone, logged)");
    const select = el("select", { testid: "emergency-mode", "aria-label": "Mode" },
      ...Object.entries(MODES).map(([value, label]) => {
        const option = el("option", { value }, label);
        option.selected = value === s.mode;
        return option;
      }));
    const apply = el("button", { type: "button", testid: "emergency-apply" }, "Set mode");
    apply.addEventListener("click", () => {
      if (select.value !== "normal" && !confirmed(`switching to “${MODES[select.value]}”`, reason)) return;
      change("PUT", "/api/console/emergency/mode", { mode: select.value, reason: reason.value });
    });
    const channels = s.channels.map((name) => {
      const paused = s.paused_channels.includes(name);
      const button = el("button", { type: "button", testid: `emergency-channel-${name}` },
        `${paused ? "Resume" : "Pause"} ${name}`);
      button.addEventListener("click", () => {
        if (!paused && !confirmed(`pausing the ${name} channel`, reason)) return;
        change("PUT", "/api/console/emergency/channel", { channel: name, paused: !paused, reason: reason.value });
      });
      return button;
    });
    return el("details", { class: "emergency-controls" },
      el("summary", {}, "Emergency switch"),
      el("div", { class: "emergency-row" }, select, label, reason, apply),
      el("div", { class: "emergency-row" }, ...channels));
  }

  const CAUSES = {
    rate: "a surge of incoming messages",
    backlog: "many messages in progress",
    latency: "Rasa answering slowly",
    kb_latency: "the knowledge base answering slowly",
    eta: "queue waits reaching the SLA",
  };

  function overloadLine(o) {
    const since = new Date(o.since).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const cause = o.cause.map((c) => CAUSES[c] || c).join(", ");
    return `Overload since ${since} (${cause}): customers are told longer reply times.`;
  }

  const DEGRADED = {
    rasa: "Degraded: Rasa is down. Every message is acknowledged at once; confident knowledge-base answers still go out, other messages wait and are answered when it is back.",
    kb: "Degraded: the knowledge base is down. Rasa replies and hands off as usual; questions for the knowledge base are offered a person.",
    redis: "Degraded: this gateway cannot reach Redis. It keeps serving: rate limits hold per gateway, and customers connected to other gateways catch up from the database when it is back.",
    database: "Degraded: the database takes no writes. Customers get a receipt at once and their messages are kept in the gateway's journal; they reach the queues and are answered when it is back.",
  };

  function render(s) {
    const on = s.mode !== "normal" || s.paused_channels.length > 0;
    const down = Object.keys(DEGRADED).filter((name) => s.components && s.components[name] === "down");
    const busy = Boolean(s.overload && s.overload.on) || down.length > 0;
    const open = box.querySelector("details")?.open;
    box.hidden = !on && !busy && !CAN_SET;
    box.className = on || busy ? "emergency on" : "emergency";
    const children = [];
    if (on) children.push(el("p", { role: "status", testid: "emergency-banner" }, summary(s)));
    if (s.overload && s.overload.on) {
      children.push(el("p", { role: "status", testid: "overload-banner" }, overloadLine(s.overload)));
    }
    for (const name of down) children.push(el("p", { role: "status", testid: `degraded-${name}` }, DEGRADED[name]));
    if (CAN_SET) children.push(controls(s));
    box.replaceChildren(...children);
    const details = box.querySelector("details");
    if (details && open) details.open = true;
  }

  async function change(method, path, body) {
    try {
      state = await request(method, path, body);
      render(state);
    } catch (error) {
      box.append(el("p", { class: "emergency-error", role: "alert", testid: "emergency-error" }, String(error.message)));
    }
  }

  async function poll() {
    try {
      const next = await request("GET", "/api/console/emergency");
      if (JSON.stringify(next) !== JSON.stringify(state)) {
        state = next;
        render(state);
      }
    } catch (_) {
      // Signed out or the gateway restarting: the page's own script says so; try again.
    }
  }

  poll();
  setInterval(poll, POLL_MS);
})();
