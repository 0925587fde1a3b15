// Console dashboard: key figures for a period, server-rendered SVG charts with their data as
// CSV and JSON, and the CSAT ratings searchable by comment. Text from the server (customers'
// comments above all) goes in with textContent only.
"use strict";

const PERIODS = ["today", "7d", "30d"];
const select = document.querySelector('[data-testid="period"]');
const figures = document.querySelector('[data-testid="key-figures"]');
const range = document.querySelector('[data-testid="range"]');
const reportCsv = document.querySelector('[data-testid="report-csv"]');
const reportJson = document.querySelector('[data-testid="report-json"]');
const search = document.querySelector('[data-testid="csat-search"]');
const comments = document.querySelector('[data-testid="csat-comments"]');
const commentsStatus = document.querySelector('[data-testid="csat-status"]');
let loading = 0;
let searching = 0;
let searchTimer = null;

function query(period, extra) {
  const params = new URLSearchParams({ period, ...extra });
  return params.toString();
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderFigures(list) {
  figures.replaceChildren(
    ...list.map((figure) => {
      const card = element("div", "figure");
      card.dataset.key = figure.key;
      card.dataset.empty = String(figure.value === null);
      card.append(
        element("div", "label", figure.label),
        element("div", "value", figure.text),
        element("div", "detail", figure.detail),
      );
      return card;
    }),
  );
}

function localTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function setLinks(period) {
  reportCsv.href = `/api/console/report?${query(period, { format: "csv" })}`;
  reportJson.href = `/api/console/report?${query(period, { format: "json" })}`;
  for (const link of document.querySelectorAll("a[data-chart][data-ext]")) {
    link.href = `/api/console/charts/${encodeURIComponent(link.dataset.chart)}.${link.dataset.ext}?${query(period)}`;
  }
}

function setCharts(period) {
  const at = String(Date.now()); // a new URL: the browser fetches the chart again
  for (const img of document.querySelectorAll('img[data-testid="chart"]')) {
    img.src = `/api/console/charts/${encodeURIComponent(img.dataset.chart)}.svg?${query(period, { at })}`;
  }
}

async function load(period) {
  const mine = ++loading;
  range.classList.remove("error");
  range.textContent = "Loading…";
  setLinks(period);
  setCharts(period);
  try {
    const response = await fetch(`/api/console/report?${query(period, { format: "json" })}`, {
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    if (mine !== loading) return; // a newer period was picked meanwhile
    renderFigures(data.figures);
    const span = `${localTime(data.since)} – ${localTime(data.until)} (report zone ${data.timezone})`;
    range.textContent = data.empty ? `${span}: no data in this period` : span;
  } catch (error) {
    if (mine !== loading) return;
    figures.replaceChildren();
    range.classList.add("error");
    range.textContent = `Could not load the figures: ${error.message}`;
  }
}

function commentRow(rating) {
  const row = document.createElement("tr");
  row.dataset.ticket = rating.ticket_id;
  if (!rating.current) row.classList.add("replaced");
  const score = rating.current ? `${rating.rating} / 5` : `${rating.rating} / 5 (changed later)`;
  const comment = rating.comment === null
    ? element("td", "comment none", "(no comment)")
    : element("td", "comment", rating.comment);
  row.append(
    element("td", "at", localTime(rating.at)),
    element("td", "rating", score),
    comment,
    element("td", "ticket", rating.reference || rating.ticket_id),
    element("td", "agent", rating.agent),
    element("td", "queue", rating.queue),
    element("td", "channel", rating.channel),
  );
  return row;
}

async function loadComments(period) {
  const mine = ++searching;
  const q = search.value.trim();
  commentsStatus.classList.remove("error");
  try {
    const response = await fetch(`/api/console/csat?${query(period, q ? { q } : {})}`, {
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    if (mine !== searching) return; // a newer search or period meanwhile
    comments.replaceChildren(...data.ratings.map(commentRow));
    const what = q ? `matching “${q}”` : "in this period";
    const shown = data.truncated ? `, the newest ${data.ratings.length} shown` : "";
    commentsStatus.textContent = `${data.total} rating${data.total === 1 ? "" : "s"} ${what}${shown}`;
  } catch (error) {
    if (mine !== searching) return;
    comments.replaceChildren();
    commentsStatus.classList.add("error");
    commentsStatus.textContent = `Could not load the ratings: ${error.message}`;
  }
}

function initialPeriod() {
  const asked = new URLSearchParams(window.location.search).get("period");
  return PERIODS.includes(asked) ? asked : "today";
}

select.value = initialPeriod();
select.addEventListener("change", () => {
  const url = new URL(window.location.href);
  url.searchParams.set("period", select.value);
  window.history.replaceState(null, "", url);
  load(select.value);
  loadComments(select.value);
});
search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => loadComments(select.value), 250);
});
load(select.value);
loadComments(select.value);
