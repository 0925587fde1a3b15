/*! Promptly agent console. Apache-2.0.
 *
 * Plain ES2020, no dependencies, no build step. It drives the agent API with the page's
 * session cookie, sending the CSRF token from <meta name="csrf-token"> on every unsafe request.
 * Untrusted text (customer messages, notes, article passages) is only ever set with
 * textContent: nothing the customer wrote goes through an HTML parser.
 */
(() => {
  "use strict";

  const root = document.getElementById("console");
  if (!root) return;
  const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const ME = {
    username: root.dataset.username || "",
    role: root.dataset.role || "",
    agentId: root.dataset.agentId || root.dataset.username || "",
  };
  const PRIORITY_RANK = { urgent: 0, high: 1, normal: 2, low: 3 };
  const LIVE = new Set(["running", "warning", "breached"]);
  const CLOCK_NAMES = { first_response: "First response", next_response: "Next response", resolution: "Resolution" };
  const EVENT_LABELS = {
    handed_off: "Handed off to the team",
    assigned: "Assigned",
    taken: "Taken",
    transferred: "Transferred",
    priority_changed: "Priority changed",
    waiting_on_customer: "Waiting on the customer",
    customer_replied: null, // the message itself shows it
    returned_to_queue: "Returned to the queue",
    escalated: "Escalated",
    sla_warning: "SLA warning",
    sla_breach: "SLA breached",
    resolved: "Resolved",
    csat: "Customer rating",
    ticket_followed: "Moved to the customer's latest conversation",
  };
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helper
  /** h("div", {class, text, "data-x": …, onclick}, ...children): text goes in as textContent. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") el.textContent = String(value);
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** Only http(s) links, or paths on this site: never javascript: or data: URLs. */
  function safeHref(url) {
    if (typeof url !== "string" || !url) return null;
    try {
      const u = new URL(url, location.origin);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  // ---------------------------------------------------------------- state
  const tickets = new Map(); // id -> ticket as the API shows it (open tickets only)
  let queues = []; // [{queue, name}]
  let agents = []; // [{id, name, presence, …}]
  let selectedId = null;
  let detail = null; // the selected ticket with messages, events and notes
  let clockOffset = 0; // gateway clock − this browser's clock (the gateway's clock may be shifted)
  const now = () => Date.now() + clockOffset;
  const filters = { mine: false, breached: false, queue: "", priority: "" };

  function setNow(iso) {
    const t = Date.parse(iso || "");
    if (!Number.isNaN(t)) clockOffset = t - Date.now();
  }

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(message, code, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = CSRF;
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (r.status === 401) {
      location.href = "/console/login?next=" + encodeURIComponent(location.pathname);
      throw new ApiError("signed out", "signed_out", 401);
    }
    const data = await r.json().catch(() => null);
    if (!r.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(error.message || `request failed (HTTP ${r.status})`, error.code, r.status);
    }
    return data;
  }
  const enc = encodeURIComponent;

  let toastTimer = 0;
  function toast(message, kind) {
    const el = $("toast");
    el.textContent = message;
    el.dataset.kind = kind || "error";
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  /** Run an action from a button: disabled while it runs, errors shown, never thrown. */
  async function act(button, fn) {
    if (button) button.disabled = true;
    try {
      return await fn();
    } catch (e) {
      if (e.status !== 401) toast(e.message || String(e));
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- time
  const timeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });
  function fmtTime(iso) {
    const t = Date.parse(iso || "");
    return Number.isNaN(t) ? "" : timeFmt.format(new Date(t));
  }
  /** A span of time, ahead or behind ("3m 07s"): callers say which ("late", "waiting"). */
  function fmtSpan(ms) {
    let s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const hh = Math.floor(s / 3600);
    s -= hh * 3600;
    const mm = Math.floor(s / 60);
    const ss = s - mm * 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (d) return `${d}d ${hh}h`;
    if (hh) return `${hh}h ${pad(mm)}m`;
    return `${mm}m ${pad(ss)}s`;
  }

  /** How far past a deadline: "46s late", "3m 07s late" (no minus sign besides "late"). */
  function fmtLate(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    return s < 60 ? `${s}s late` : `${fmtSpan(ms)} late`;
  }

  /** A clock's state now: the server's snapshot, moved on by the browser's (corrected) clock. */
  function liveState(clock) {
    if (!clock || !LIVE.has(clock.state) || !clock.due) return clock ? clock.state : "idle";
    const t = now();
    if (t >= Date.parse(clock.due)) return "breached";
    if (clock.warn_at && t >= Date.parse(clock.warn_at)) return "warning";
    return "running";
  }

  function nextDeadline(ticket) {
    const clocks = (ticket.sla && ticket.sla.clocks) || {};
    let best = null;
    for (const [name, clock] of Object.entries(clocks)) {
      if (!LIVE.has(clock.state) || !clock.due) continue;
      if (!best || Date.parse(clock.due) < Date.parse(best.due)) best = { name, ...clock };
    }
    return best;
  }

  const isPaused = (ticket) => Boolean(ticket.sla && ticket.sla.paused);
  const isBreached = (ticket) =>
    Object.values((ticket.sla && ticket.sla.clocks) || {}).some((c) => liveState(c) === "breached");

  /** The countdown element of a ticket (queue row) or one clock (ticket view). */
  function countdown(clock, fallback) {
    const el = h("span", { class: "countdown", "data-testid": "countdown" });
    if (clock && clock.due) {
      el.dataset.due = clock.due;
      if (clock.warn_at) el.dataset.warn = clock.warn_at;
      el.dataset.state = clock.state;
    } else {
      el.dataset.fallback = fallback || "none";
    }
    paintCountdown(el);
    return el;
  }

  function paintCountdown(el) {
    if (!el.dataset.due) {
      el.dataset.level = el.dataset.fallback === "paused" ? "paused" : "none";
      el.textContent = el.dataset.fallback === "paused" ? "paused" : "—";
      return;
    }
    const level = { running: "ok", warning: "warning", breached: "breached" }[
      liveState({ state: el.dataset.state, due: el.dataset.due, warn_at: el.dataset.warn })
    ];
    el.dataset.level = level || "none";
    const left = Date.parse(el.dataset.due) - now();
    el.textContent = left < 0 ? fmtLate(left) : fmtSpan(left);
    el.title = `Due ${fmtTime(el.dataset.due)}`;
  }

  // ---------------------------------------------------------------- queue view
  function visible(ticket) {
    if (filters.mine && ticket.assignee !== ME.agentId) return false;
    if (filters.queue && ticket.queue !== filters.queue) return false;
    if (filters.priority && ticket.priority !== filters.priority) return false;
    if (filters.breached && !isBreached(ticket)) return false;
    return true;
  }

  function order(a, b) {
    const da = nextDeadline(a);
    const db = nextDeadline(b);
    const ta = da ? Date.parse(da.due) : Infinity;
    const tb = db ? Date.parse(db.due) : Infinity;
    if (ta !== tb) return ta - tb;
    return (PRIORITY_RANK[a.priority] ?? 9) - (PRIORITY_RANK[b.priority] ?? 9);
  }

  function queueName(key) {
    const q = queues.find((x) => x.queue === key);
    return q ? q.name : key;
  }

  function renderQueue() {
    const list = $("queue");
    const shown = [...tickets.values()].filter(visible).sort(order);
    const byQueue = new Map();
    for (const t of shown) {
      if (!byQueue.has(t.queue)) byQueue.set(t.queue, []);
      byQueue.get(t.queue).push(t);
    }
    // Groups in the order of their first row: the queue holding the ticket closest to breach
    // comes first (rows are sorted by deadline, so a Map keeps that order); ties keep config order.
    const configured = (key) => {
      const i = queues.findIndex((q) => q.queue === key);
      return i < 0 ? Infinity : i;
    };
    const keys = [...byQueue.keys()].sort(
      (a, b) => order(byQueue.get(a)[0], byQueue.get(b)[0]) || configured(a) - configured(b),
    );
    const nodes = [];
    for (const key of keys) {
      const rows = byQueue.get(key);
      nodes.push(h("h3", { "data-queue": key, text: `${queueName(key)} · ${rows.length}` }));
      for (const t of rows) nodes.push(ticketRow(t));
    }
    if (!nodes.length) nodes.push(h("p", { class: "none", text: tickets.size ? "No ticket matches the filters." : "No open tickets." }));
    list.replaceChildren(...nodes);
  }

  function ticketRow(t) {
    const deadline = nextDeadline(t);
    const waited = t.waiting_since ? now() - Date.parse(t.waiting_since) : null;
    const row = h(
      "div",
      {
        class: "ticket-row",
        role: "button",
        tabindex: "0",
        "data-testid": "ticket-row",
        "data-ticket-id": t.id,
        "data-priority": t.priority,
        "aria-selected": t.id === selectedId ? "true" : "false",
        onclick: () => openTicket(t.id),
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openTicket(t.id); } },
      },
      h("span", { class: "ref", text: t.reference }),
      countdown(deadline, isPaused(t) ? "paused" : "none"),
      h("span", { class: "who", text: (t.customer && (t.customer.name || t.customer.email)) || "Customer" }),
      h("span", { class: "assignee", text: t.assignee ? (t.assignee === ME.agentId ? "you" : t.assignee) : "unassigned" }),
      h("span", { class: "snippet", text: t.last_message || "" }),
      h(
        "span",
        { class: "meta" },
        h("span", { class: `badge p-${t.priority}`, text: t.priority }),
        h("span", { class: `badge tier-${t.tier}`, text: t.tier }),
        h("span", { class: "badge", text: t.channel || "?" }),
        t.status === "waiting_on_customer" ? h("span", { class: "badge", text: "waiting on customer" }) : null,
        waited !== null ? h("span", { class: "waited", "data-since": t.waiting_since, text: `waiting ${fmtSpan(waited)}` }) : null,
      ),
    );
    return row;
  }

  /** Once a second: countdowns and waiting times move; the breached filter re-applies. */
  function tick() {
    for (const el of document.querySelectorAll('[data-testid="countdown"]')) paintCountdown(el);
    for (const el of document.querySelectorAll(".waited[data-since]")) {
      el.textContent = `waiting ${fmtSpan(now() - Date.parse(el.dataset.since))}`;
    }
    if (filters.breached) {
      const shown = document.querySelectorAll('#queue [data-testid="ticket-row"]').length;
      if (shown !== [...tickets.values()].filter(visible).length) renderQueue();
    }
  }

  async function loadTickets() {
    const data = await api("GET", "/api/agent/tickets");
    setNow(data.now);
    tickets.clear();
    for (const t of data.tickets) tickets.set(t.id, t);
    renderQueue();
  }

  async function loadQueues() {
    const data = await api("GET", "/api/queues");
    queues = data.queues.map((q) => ({ queue: q.queue, name: q.name }));
    const options = queues.map((q) => h("option", { value: q.queue, text: q.name }));
    $("filter-queue").replaceChildren(h("option", { value: "", text: "All queues" }), ...options);
    $("transfer-queue").replaceChildren(
      h("option", { value: "", text: "Queue…" }),
      ...queues.map((q) => h("option", { value: q.queue, text: q.name })),
    );
  }

  async function loadAgents() {
    const data = await api("GET", "/api/agent/agents");
    agents = data.agents;
    $("transfer-agent").replaceChildren(
      h("option", { value: "", text: "Agent…" }),
      ...agents.map((a) => h("option", { value: a.id, text: `${a.name} (${a.presence}, ${a.open_tickets}/${a.capacity})` })),
    );
    const mine = agents.find((a) => a.id === ME.agentId);
    const presence = $("presence");
    presence.value = mine ? mine.presence : "offline";
    presence.disabled = false;
  }

  // ---------------------------------------------------------------- ticket view
  async function openTicket(id) {
    selectedId = id;
    for (const row of document.querySelectorAll('[data-testid="ticket-row"]')) {
      row.setAttribute("aria-selected", row.dataset.ticketId === id ? "true" : "false");
    }
    await act(null, async () => {
      const data = await api("GET", `/api/agent/tickets/${enc(id)}`);
      if (selectedId !== id) return;
      const first = !detail || detail.id !== id;
      detail = data;
      setNow(data.now);
      renderTicket();
      if (first) {
        $("reply-text").value = "";
        $("note-text").value = "";
        loadHistory(data.customer.id, id);
        suggest(data.last_message || "");
      }
    });
  }

  /** Refetch the open ticket at most every 300 ms however many feed frames name it. */
  let refreshTimer = 0;
  function refreshSoon() {
    if (refreshTimer || !selectedId) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = 0;
      if (selectedId) openTicket(selectedId);
    }, 300);
  }

  function renderTicket() {
    const t = detail;
    $("ticket-empty").hidden = true;
    $("ticket-view").hidden = false;
    $("ticket-view").dataset.ticketId = t.id;
    $("ticket-view").dataset.status = t.status;
    const customer = (t.customer && (t.customer.name || t.customer.email)) || "Customer";
    $("t-title").textContent = `${t.reference} · ${customer}`;
    $("t-title").title = $("t-title").textContent; // the heading shows two lines at most
    $("t-badges").replaceChildren(
      h("span", { class: `badge p-${t.priority}`, text: t.priority }),
      h("span", { class: `badge tier-${t.tier}`, text: t.tier }),
      h("span", { class: "badge", text: t.channel || "?" }),
      h("span", { class: "badge", "data-testid": "ticket-status", text: t.status.replaceAll("_", " ") }),
    );
    const fact = (label, value) =>
      h("div", { "data-fact": label.toLowerCase() }, h("dt", { text: label }), h("dd", { text: value || "—", title: value || null }));
    $("t-facts").replaceChildren(
      fact("Queue", queueName(t.queue)),
      fact("Assignee", t.assignee === ME.agentId ? `${t.assignee} (you)` : t.assignee),
      fact("Opened", fmtTime(t.created_at)),
      fact("Reason", t.reason),
      fact("Customer", [t.customer.name, t.customer.email].filter(Boolean).join(" · ")),
    );
    $("t-clocks").replaceChildren(
      ...Object.entries(t.sla.clocks).map(([name, clock]) =>
        h(
          "span",
          { class: "clock", "data-clock": name, "data-state": clock.state },
          h("span", { class: "name", text: CLOCK_NAMES[name] || name }),
          LIVE.has(clock.state) ? countdown(clock) : h("span", { text: clock.state.replaceAll("_", " ") }),
        ),
      ),
    );
    const open = t.status !== "resolved";
    for (const id of ["take", "waiting", "priority", "transfer", "resolve", "send-reply", "canned"]) $(id).disabled = !open;
    $("take").disabled = !open || t.assignee === ME.agentId;
    $("waiting").disabled = !open || t.status === "waiting_on_customer";
    $("priority").value = t.priority;
    $("reply-channel").textContent = t.channel ? `Replies go to ${t.channel}` : "";
    renderConversation(t);
  }

  function renderConversation(t) {
    const entries = [];
    for (const f of t.messages || []) entries.push({ at: f.created_at, seq: f.seq, node: messageEntry(f, t) });
    for (const n of t.notes || []) entries.push({ at: n.at, seq: 0, node: noteEntry(n) });
    for (const e of t.events || []) {
      const node = eventEntry(e);
      if (node) entries.push({ at: e.at, seq: 0, node });
    }
    entries.sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.seq - b.seq);
    const box = $("conversation");
    const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    box.replaceChildren(...entries.map((e) => e.node));
    if (stick) box.scrollTop = box.scrollHeight;
  }

  function messageEntry(f, t) {
    const type = String(f.type || "system");
    let who = "System";
    let cls = "system";
    if (type === "customer") {
      who = (t.customer && t.customer.name) || "Customer";
      cls = "customer";
    } else if (type === "agent") {
      who = (f.agent && f.agent.name) || "Agent";
      cls = "agent";
    } else if (type === "ack" || type === "answer") {
      who = type === "ack" && f.kind ? `Bot (${f.kind})` : "Bot";
      cls = "bot";
    }
    const node = h(
      "div",
      { class: `entry ${cls}`, "data-type": type, "data-seq": f.seq },
      h("div", { class: "who" }, h("span", { text: who }), h("time", { datetime: f.created_at, text: fmtTime(f.created_at) })),
      h("div", { class: "text", text: f.text || "" }),
    );
    if (Array.isArray(f.attachments) && f.attachments.length) {
      node.append(h("div", { class: "hint", text: f.attachments.map((a) => `[${a.kind || "attachment"}] ${a.name || a.caption || ""}`).join(", ") }));
    }
    if (Array.isArray(f.citations) && f.citations.length) {
      const ul = h("ul", { class: "cites" });
      for (const c of f.citations) {
        const href = safeHref(c && c.url);
        ul.append(h("li", {}, href ? h("a", { href, target: "_blank", rel: "noopener", text: c.title || href }) : String((c && c.title) || "")));
      }
      node.append(ul);
    }
    if (f.delivery && f.delivery.status === "failed") {
      node.append(h("div", { class: "failed", text: `Not delivered: ${f.delivery.reason || f.delivery.error || "failed"}` }));
    }
    return node;
  }

  function noteEntry(n) {
    const who = (n.agent && n.agent.name) || n.by || "Agent";
    return h(
      "div",
      { class: "entry note", "data-testid": "note" },
      h("div", { class: "who" }, h("span", { text: `Internal note · ${who}` }), h("time", { datetime: n.at, text: fmtTime(n.at) })),
      h("div", { class: "text", text: n.text || "" }),
    );
  }

  function eventEntry(e) {
    const label = EVENT_LABELS[e.type];
    if (!label) return null;
    const d = e.data || {};
    const bits = [label];
    if (e.type === "csat") bits.push(`${d.rating}/5${d.comment ? ` “${d.comment}”` : ""}`);
    if ((e.type === "priority_changed" || e.type === "escalated") && d.priority) bits.push(`→ ${d.priority}`);
    if ((e.type === "transferred" || e.type === "handed_off") && d.queue) bits.push(`→ ${queueName(d.queue)}`);
    if (e.type === "assigned" && d.agent) bits.push(`to ${d.agent}`);
    if (e.type === "taken" && d.agent) bits.push(`by ${d.agent}`);
    if (e.type === "returned_to_queue" && d.why) bits.push(`(${String(d.why).replaceAll("_", " ")})`);
    if (d.timer) bits.push(`(${d.timer})`);
    return h("div", { class: "entry event", "data-event": e.type }, h("span", { text: `${bits.join(" ")} · ${fmtTime(e.at)}` }));
  }

  async function loadHistory(customerId, ticketId) {
    const box = $("history");
    box.replaceChildren(h("p", { class: "hint", text: "Loading…" }));
    try {
      const c = await api("GET", `/api/agent/customers/${enc(customerId)}`);
      if (selectedId !== ticketId) return;
      const nodes = [
        h("p", { class: "hint", text: [c.name, c.email, `tier ${c.tier}`].filter(Boolean).join(" · ") }),
      ];
      const past = c.tickets.filter((x) => x.id !== ticketId);
      nodes.push(h("h3", { class: "hint", text: past.length ? "Other tickets" : "No other tickets" }));
      for (const x of past) {
        nodes.push(
          h(
            "div",
            { class: "line", "data-testid": "past-ticket" },
            `${x.reference} · ${x.status.replaceAll("_", " ")} · ${queueName(x.queue)} · ${fmtTime(x.created_at)} — `,
            x.last_message || "",
          ),
        );
      }
      for (const conv of c.conversations) {
        const details = h(
          "details",
          { "data-conversation": conv.id },
          h("summary", { text: `${conv.channel}${conv.id === (detail && detail.conversation_id) ? " (this conversation)" : ""} · ${conv.messages.length} messages` }),
        );
        for (const m of conv.messages) details.append(h("div", { class: "line", text: `${fmtTime(m.created_at)} ${m.type}: ${m.text}` }));
        nodes.push(details);
      }
      box.replaceChildren(...nodes);
    } catch (e) {
      box.replaceChildren(h("p", { class: "hint", text: `History unavailable: ${e.message}` }));
    }
  }

  // ---------------------------------------------------------------- actions
  const ticketPath = (suffix) => `/api/agent/tickets/${enc(selectedId)}/${suffix}`;

  async function afterAction(ticket) {
    if (ticket && ticket.id) {
      if (ticket.status === "resolved") tickets.delete(ticket.id);
      else tickets.set(ticket.id, ticket);
      renderQueue();
    }
    await openTicket(selectedId);
  }

  function wireActions() {
    $("take").addEventListener("click", (e) => act(e.currentTarget, async () => afterAction(await api("POST", ticketPath("take"), {}))));
    $("waiting").addEventListener("click", (e) => act(e.currentTarget, async () => afterAction(await api("POST", ticketPath("waiting"), {}))));
    $("priority").addEventListener("change", (e) =>
      act(e.currentTarget, async () => afterAction(await api("POST", ticketPath("priority"), { priority: e.currentTarget.value }))),
    );
    $("transfer").addEventListener("click", (e) =>
      act(e.currentTarget, async () => {
        const queue = $("transfer-queue").value || null;
        const agentId = $("transfer-agent").value || null;
        if (!queue && !agentId) throw new ApiError("Pick a queue, an agent or both.");
        await afterAction(await api("POST", ticketPath("transfer"), { queue, agent_id: agentId }));
        $("transfer-queue").value = "";
        $("transfer-agent").value = "";
      }),
    );
    // No confirm(): a customer who still needs help is handed off again, and dialogs stall automation.
    $("resolve").addEventListener("click", (e) =>
      act(e.currentTarget, async () => afterAction(await api("POST", ticketPath("resolve"), {}))),
    );
    $("send-reply").addEventListener("click", (e) =>
      act(e.currentTarget, async () => {
        const box = $("reply-text");
        const text = box.value.trim();
        if (!text) throw new ApiError("Write a reply first.");
        await api("POST", ticketPath("replies"), { text });
        box.value = "";
        await openTicket(selectedId);
      }),
    );
    $("add-note").addEventListener("click", (e) =>
      act(e.currentTarget, async () => {
        const box = $("note-text");
        const text = box.value.trim();
        if (!text) throw new ApiError("Write the note first.");
        await api("POST", ticketPath("notes"), { text });
        box.value = "";
        await openTicket(selectedId);
      }),
    );
    $("canned").addEventListener("change", (e) => {
      const reply = canned.find((c) => c.id === e.currentTarget.value);
      e.currentTarget.value = "";
      if (reply) insertReply(reply.text);
    });
    $("presence").addEventListener("change", (e) => act(e.currentTarget, () => setPresence(e.currentTarget.value)));
  }

  /** Insert at the caret of the reply box (or at its end), keeping what is written. */
  function insertReply(text) {
    const box = $("reply-text");
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? box.value.length;
    const before = box.value.slice(0, start);
    const gap = before && !before.endsWith("\n") ? "\n" : "";
    box.value = before + gap + text + box.value.slice(end);
    const caret = (before + gap + text).length;
    box.focus();
    box.setSelectionRange(caret, caret);
  }

  async function setPresence(presence) {
    const mine = agents.find((a) => a.id === ME.agentId);
    // The full record: an admin's PUT replaces it, so capacity, skills and queues are kept.
    await api("PUT", `/api/agent/agents/${enc(ME.agentId)}`, {
      name: mine ? mine.name : ME.username,
      presence,
      capacity: mine ? mine.capacity : 3,
      skills: mine ? mine.skills : [],
      queues: mine ? mine.queues : [],
    });
    toast(`You are ${presence}.`, "ok");
    await loadAgents();
  }

  // ---------------------------------------------------------------- canned replies
  let canned = [];
  async function loadCanned() {
    const data = await api("GET", "/api/agent/canned");
    canned = data.canned;
    $("canned").replaceChildren(
      h("option", { value: "", text: canned.length ? "Canned reply…" : "No canned replies" }),
      ...canned.map((c) => h("option", { value: c.id, text: c.title })),
    );
  }

  // ---------------------------------------------------------------- knowledge panel
  let kbSerial = 0;
  async function suggest(query) {
    const serial = ++kbSerial;
    const box = $("kb-suggestions");
    const q = query.trim().slice(0, 500);
    if (!q) {
      box.replaceChildren();
      $("kb-hint").textContent = "Search the knowledge base above.";
      return;
    }
    $("kb-hint").textContent = `Top articles for “${q.length > 80 ? q.slice(0, 80) + "…" : q}”`;
    try {
      const data = await api("GET", `/api/kb/search?audience=agent&q=${enc(q)}`);
      if (serial !== kbSerial) return; // a newer search already answered
      box.replaceChildren(...(data.hits.length ? data.hits.map(hitCard) : [h("p", { class: "hint", text: "No matching article." })]));
    } catch (e) {
      if (serial !== kbSerial) return;
      if (e.code === "kb_disabled") $("kb-hint").textContent = "The knowledge base is off on this gateway.";
      box.replaceChildren(h("p", { class: "hint", text: e.code === "kb_disabled" ? "" : `Search failed: ${e.message}` }));
    }
  }

  function hitCard(hit) {
    // /kb/<id> never serves an internal article (to agents neither): no link that 404s.
    const href = hit.internal ? null : safeHref(hit.citation && hit.citation.url);
    return h(
      "div",
      { class: "hit", "data-testid": "kb-hit", "data-article-id": hit.article_id },
      h("h4", {}, h("span", { text: hit.title }), hit.internal ? h("span", { class: "badge internal", text: "internal" }) : null),
      h("div", { class: "passage", text: hit.passage }),
      h(
        "div",
        { class: "foot" },
        href
          ? h("a", { href, target: "_blank", rel: "noopener", "data-testid": "kb-open", text: "Open article" })
          : h("span", { class: "hint", text: hit.internal ? "Agents only: not on the help centre" : "" }),
        h("button", {
          type: "button",
          "data-testid": "kb-insert",
          text: "Insert",
          title: hit.internal ? "Internal article: check before sending it to the customer" : "Insert with its citation",
          onclick: () => insertReply(citedPassage(hit, href)),
        }),
      ),
    );
  }

  /** The passage with its source, as plain text the customer can follow on any channel. */
  function citedPassage(hit, href) {
    if (hit.internal || !href) return hit.passage; // the customer could not open the link
    return `${hit.passage}\n\nSource: ${hit.title} (${href})`;
  }

  // ---------------------------------------------------------------- live feed
  let socket = null;
  let backoff = 500;
  let loading = false;
  let buffered = [];
  let agentsTimer = 0;

  function setLive(state, text) {
    const el = $("live-status");
    el.dataset.state = state;
    el.textContent = text;
  }

  function connect() {
    const u = new URL("/api/agent/live", location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(u.href);
    socket.addEventListener("message", (m) => {
      let frame = null;
      try {
        frame = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      if (frame.type === "hello") onHello(frame);
      else if (frame.type === "event") (loading ? buffered.push(frame) : apply(frame));
    });
    socket.addEventListener("close", () => {
      setLive("down", "Live updates lost; reconnecting…");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    });
  }

  /** On every (re)connect: load the present, then apply what the feed sent meanwhile. */
  async function onHello(frame) {
    setNow(frame.now);
    backoff = 500;
    loading = true;
    buffered = [];
    try {
      await loadTickets();
      setLive("live", "Live");
    } catch (e) {
      setLive("down", `Could not load tickets: ${e.message}`);
    } finally {
      loading = false;
      const frames = buffered;
      buffered = [];
      for (const f of frames) apply(f);
    }
    if (selectedId) refreshSoon();
  }

  function apply(frame) {
    if (frame.now) setNow(frame.now);
    if (frame.ticket) {
      if (frame.ticket.status === "resolved") tickets.delete(frame.ticket.id);
      else tickets.set(frame.ticket.id, frame.ticket);
      renderQueue();
    }
    if (frame.ticket_id && frame.ticket_id === selectedId) refreshSoon();
    if (frame.event === "agent_presence" || frame.event === "assigned" || frame.event === "taken") {
      clearTimeout(agentsTimer);
      agentsTimer = setTimeout(() => act(null, loadAgents), 500);
    }
  }

  // ---------------------------------------------------------------- start
  function wireFilters() {
    const on = (id, event, fn) => $(id).addEventListener(event, (e) => { fn(e.currentTarget); renderQueue(); });
    on("filter-mine", "change", (el) => { filters.mine = el.checked; });
    on("filter-breached", "change", (el) => { filters.breached = el.checked; });
    on("filter-queue", "change", (el) => { filters.queue = el.value; });
    on("filter-priority", "change", (el) => { filters.priority = el.value; });
    $("kb-form").addEventListener("submit", (e) => { e.preventDefault(); suggest($("kb-search").value); });
    let typing = 0;
    $("kb-search").addEventListener("input", (e) => {
      clearTimeout(typing);
      const value = e.currentTarget.value;
      typing = setTimeout(() => { if (value.trim().length >= 3) suggest(value); }, 350);
    });
  }

  async function start() {
    wireFilters();
    wireActions();
    await Promise.all([act(null, loadQueues), act(null, loadAgents), act(null, loadCanned)]);
    connect();
    setInterval(tick, 1000);
  }

  start();
})();
