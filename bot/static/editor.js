// Knowledge base editor. Server text goes in with textContent only; the one exception is the
// preview, which is HTML the server sanitised (nh3).
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const form = $("article-form");
const list = $("article-list");
const status = $("editor-status");
const versionsList = $("versions");
const diffView = $("diff-view");
const preview = $("preview");

// The article being edited: null for a new one. `version` is what edits are based on.
let current = null;
let dirty = false;
let idTyped = false; // a new article's id follows its title until the editor types one

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrf };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || response.statusText);
    error.code = data.error && data.error.code;
    throw error;
  }
  return data;
}

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function when(iso) {
  return new Date(iso).toLocaleString();
}

// -- list ------------------------------------------------------------------------------------

async function loadList() {
  const params = new URLSearchParams();
  const q = $("article-search").value.trim();
  const state = $("article-status-filter").value;
  if (q) params.set("q", q);
  if (state) params.set("status", state);
  const { articles } = await api("GET", `/api/console/articles?${params}`);
  list.replaceChildren(...articles.map(listItem));
}

function listItem(article) {
  const item = el("li");
  item.dataset.articleId = article.id;
  const button = el("button");
  button.type = "button";
  if (current && current.id === article.id) button.setAttribute("aria-current", "true");
  button.append(el("span", article.title, "title"));
  const meta = el("span", "", "meta");
  meta.append(el("span", article.status, `badge ${article.status}`));
  if (article.audience === "internal") meta.append(el("span", "internal", "badge internal"));
  meta.append(`v${article.version} · ${article.updated_by} · ${when(article.updated_at)}`);
  button.append(meta);
  button.addEventListener("click", () => open(article.id));
  item.append(button);
  return item;
}

// -- the form --------------------------------------------------------------------------------

function fill(article) {
  current = article;
  form.elements.id.value = article ? article.id : "";
  form.elements.id.readOnly = Boolean(article);
  idTyped = false;
  form.elements.title.value = article ? article.title : "";
  form.elements.body.value = article ? article.body : "";
  form.elements.questions.value = article ? article.questions.join("\n") : "";
  form.elements.tags.value = article ? article.tags.join(", ") : "";
  form.elements.audience.value = article ? article.audience : "customer";
  form.elements.language.value = article ? article.language : "en";
  dirty = false;
  showState();
  renderPreview();
}

function showState() {
  const state = $("article-state");
  if (!current) {
    state.textContent = "New article (not saved)";
  } else {
    const live = current.live_version ? `live: v${current.live_version}` : "not live";
    state.textContent = `${current.status} · v${current.version} · ${live} · last saved by ${current.updated_by}`;
  }
  $("archive").disabled = !current || current.status === "archived";
}

function content() {
  const f = form.elements;
  return {
    title: f.title.value,
    body: f.body.value,
    questions: f.questions.value.split("\n").map((q) => q.trim()).filter(Boolean),
    tags: f.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
    audience: f.audience.value,
    language: f.language.value.trim(),
  };
}

async function open(id) {
  if (dirty && !confirm("Discard your unsaved changes?")) return;
  try {
    fill(await api("GET", `/api/console/articles/${encodeURIComponent(id)}`));
    say("");
    await Promise.all([loadVersions(), loadList()]);
  } catch (error) {
    say(error.message, true);
  }
}

function conflictMessage(error) {
  return error.code === "stale_version"
    ? `${error.message}. Copy your changes, then open the article again.`
    : error.message;
}

// Saves, creating the article first when it is new; returns the stored article.
async function save() {
  if (!current) {
    return api("POST", "/api/console/articles", { id: form.elements.id.value.trim(), ...content() });
  }
  const path = `/api/console/articles/${encodeURIComponent(current.id)}`;
  return api("PUT", path, { version: current.version, ...content() });
}

async function afterWrite(article, message) {
  fill(article);
  say(message);
  await Promise.all([loadVersions(), loadList()]);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!form.reportValidity()) return;
  try {
    const article = await save();
    await afterWrite(article, `Saved draft v${article.version}.`);
  } catch (error) {
    say(conflictMessage(error), true);
  }
});

$("publish").addEventListener("click", async () => {
  if (!form.reportValidity()) return;
  try {
    if (!current) fill(await save()); // a new article is created first, as a draft
    const path = `/api/console/articles/${encodeURIComponent(current.id)}/publish`;
    const article = await api("POST", path, { version: current.version, content: content() });
    const took = article.visible_ms !== undefined ? ` (searchable after ${article.visible_ms} ms)` : "";
    await afterWrite(article, `Published v${article.version}${took}.`);
    if (gapsForm) loadGaps(); // its nearest article may be this one now
  } catch (error) {
    say(conflictMessage(error), true);
  }
});

$("archive").addEventListener("click", async () => {
  if (!current || !confirm(`Archive “${current.title}”? The bot stops using it at once.`)) return;
  try {
    const path = `/api/console/articles/${encodeURIComponent(current.id)}/archive`;
    const article = await api("POST", path, { version: current.version });
    await afterWrite(article, `Archived (v${article.version}).`);
  } catch (error) {
    say(conflictMessage(error), true);
  }
});

$("new-article").addEventListener("click", () => {
  if (dirty && !confirm("Discard your unsaved changes?")) return;
  fill(null);
  versionsList.replaceChildren();
  diffView.hidden = true;
  say("");
  form.elements.id.focus();
});

// -- preview ---------------------------------------------------------------------------------

let previewTimer = null;
let previewSeq = 0;

async function renderPreview() {
  const seq = ++previewSeq;
  const body = form.elements.body.value;
  if (!body.trim()) {
    preview.replaceChildren();
    return;
  }
  try {
    const { html } = await api("POST", "/api/console/preview", { body });
    if (seq === previewSeq) preview.innerHTML = html; // sanitised by the server (nh3)
  } catch (error) {
    if (seq === previewSeq) preview.replaceChildren(el("p", error.message, "hint"));
  }
}

function slug(text) {
  return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
    .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 100);
}

form.addEventListener("input", (event) => {
  dirty = true;
  if (event.target === form.elements.id) idTyped = form.elements.id.value !== "";
  if (event.target === form.elements.title && !current && !idTyped) {
    form.elements.id.value = slug(form.elements.title.value);
  }
  if (event.target === form.elements.body) {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(renderPreview, 250);
  }
});

window.addEventListener("beforeunload", (event) => {
  if (dirty) event.preventDefault();
});

// -- versions --------------------------------------------------------------------------------

async function loadVersions() {
  if (!current) return;
  const path = `/api/console/articles/${encodeURIComponent(current.id)}/versions`;
  const { versions } = await api("GET", path);
  versionsList.replaceChildren(...versions.map(versionItem));
}

function versionItem(version) {
  const item = el("li");
  item.dataset.version = version.version;
  item.append(el("strong", `v${version.version}`));
  item.append(el("span", version.status, `badge ${version.status}`));
  item.append(el("span", `${version.author} · ${when(version.at)}`));
  if (version.version !== current.version) {
    item.append(button("Diff", `diff-${version.version}`, () => showDiff(version.version)));
    item.append(button("Restore", `restore-${version.version}`, () => restore(version.version)));
  }
  return item;
}

function button(text, testid, onClick) {
  const node = el("button", text);
  node.type = "button";
  node.dataset.testid = testid;
  node.addEventListener("click", onClick);
  return node;
}

async function showDiff(old) {
  const params = new URLSearchParams({ from: old, to: current.version });
  const path = `/api/console/articles/${encodeURIComponent(current.id)}/diff?${params}`;
  try {
    const { diff } = await api("GET", path);
    const lines = diff ? diff.split("\n") : [`v${old} and v${current.version} have the same content.`];
    diffView.replaceChildren(...lines.map(diffLine));
    diffView.hidden = false;
  } catch (error) {
    say(error.message, true);
  }
}

function diffLine(line) {
  let kind = "";
  if (line.startsWith("@@") || line.startsWith("---") || line.startsWith("+++")) kind = "hunk";
  else if (line.startsWith("+")) kind = "add";
  else if (line.startsWith("-")) kind = "del";
  return el("span", `${line}\n`, kind);
}

async function restore(old) {
  if (dirty && !confirm("Discard your unsaved changes?")) return;
  try {
    const path = `/api/console/articles/${encodeURIComponent(current.id)}/restore`;
    const article = await api("POST", path, { version: current.version, from_version: old });
    diffView.hidden = true;
    await afterWrite(article, `Restored v${old} as draft v${article.version}; publish it to serve it.`);
  } catch (error) {
    say(conflictMessage(error), true);
  }
}

// -- try it ----------------------------------------------------------------------------------

const tryForm = $("try-form");
if (tryForm) {
  tryForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const results = $("try-results");
    try {
      const answer = await api("POST", "/api/console/try", { question: $("try-question").value });
      if (!answer.hits.length) {
        results.replaceChildren(el("li", "No article matches."));
        return;
      }
      results.replaceChildren(...answer.hits.map(hitItem));
    } catch (error) {
      results.replaceChildren(el("li", error.message));
    }
  });
}

function hitItem(hit) {
  const item = el("li");
  item.dataset.articleId = hit.article_id;
  item.append(el("strong", hit.title), " ");
  item.append(el("span", hit.score.toFixed(3), "score"), " ");
  // The floor decides whether the bot answers with it, the offer floor whether it is offered
  // as a choice, and the stricter direct floor whether it still answers while Rasa is down.
  const verdict = hit.above_direct_floor
    ? "answered, even with Rasa down"
    : hit.above_floor ? "answered" : hit.above_offer_floor ? "offered as a choice" : "below the floors: not used";
  item.append(el("span", verdict, `badge ${hit.above_floor ? "published" : hit.above_offer_floor ? "draft" : "archived"}`));
  item.append(el("span", hit.passage, "passage"));
  return item;
}

// -- content gaps ----------------------------------------------------------------------------

const gapsForm = $("gaps-form");

async function loadGaps() {
  const days = Number($("gaps-days").value);
  const since = new Date(Date.now() - days * 86_400_000).toISOString();
  const list = $("gaps-list");
  try {
    const report = await api("GET", `/api/kb/gaps?${new URLSearchParams({ since, limit: 10 })}`);
    list.replaceChildren(...report.gaps.map(gapItem));
    if (!report.gaps.length) list.replaceChildren(el("li", "No unanswered questions in this period."));
  } catch (error) {
    list.replaceChildren(el("li", error.message));
  }
}

function gapItem(gap) {
  const item = el("li");
  item.append(el("strong", `Asked ${gap.count}×`), " ");
  const how = [];
  if (gap.unanswered) how.push(`${gap.unanswered} declined`);
  if (gap.low_confidence) how.push(`${gap.low_confidence} only offered choices`);
  item.append(el("span", how.join(", "), "score"));
  const examples = el("ul", undefined, "examples");
  examples.append(...gap.examples.map((question) => el("li", `“${question}”`)));
  item.append(examples);
  if (gap.nearest) {
    const near = el("span", "Nearest: ", "passage");
    near.append(button(gap.nearest.title, "gap-nearest", () => open(gap.nearest.article_id)));
    near.append(` (${gap.nearest.score.toFixed(2)})`);
    item.append(near);
  }
  item.append(button("Write an article", "gap-write", () => draftFromGap(gap)));
  return item;
}

// A new article that starts from the customers' own words: they become its alternate questions.
function draftFromGap(gap) {
  if (dirty && !confirm("Discard your unsaved changes?")) return;
  fill(null);
  versionsList.replaceChildren();
  diffView.hidden = true;
  form.elements.questions.value = gap.examples.join("\n");
  dirty = true;
  say("New article: the customers' questions are its alternate questions. Give it a title and an answer.");
  form.elements.title.focus();
}

if (gapsForm) {
  gapsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    loadGaps();
  });
  $("gaps-days").addEventListener("change", loadGaps);
}

// -- start -----------------------------------------------------------------------------------

let searchTimer = null;
$("article-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => loadList().catch((e) => say(e.message, true)), 200);
});
$("article-status-filter").addEventListener("change", () => loadList().catch((e) => say(e.message, true)));

fill(null);
loadList().catch((error) => say(error.message, true));
if (gapsForm) loadGaps();
