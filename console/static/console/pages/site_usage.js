// Usage charts (uPlot, vendored) from the usage API: 1 h of raw samples, 24 h by hour,
// 30 d by day; and the daily table of the last 30 days.
import { api, el, fmt, say } from "../console.js";
import { siteApi } from "../site_header.js";

const RANGES = {
  "1h": { resolution: "raw", ms: 3600e3, label: "every sample of the last hour" },
  "24h": { resolution: "hour", ms: 86400e3, label: "hourly, last 24 hours" },
  "30d": { resolution: "day", ms: 30 * 86400e3, label: "daily, last 30 days" },
};
const status = document.getElementById("usage-status");
const charts = {};

function draw(id, x, series) {
  const target = document.getElementById(id);
  const width = Math.max(280, target.clientWidth || 600);
  const options = {
    width, height: 200,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, value: (u, v) => fmt.number(v, 1) }))],
    axes: [{}, { values: (u, values) => values.map((v) => fmt.number(v, 1)) }],
  };
  charts[id]?.destroy();
  target.replaceChildren();
  if (!x.length) { target.append(el("p", { class: "empty" }, "No data for this range yet: samples arrive every 30 s while the site runs.")); return; }
  charts[id] = new window.uPlot(options, [x, ...series.map((s) => s.values)], target);
}

async function show(range) {
  const spec = RANGES[range];
  for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b.dataset.range === range));
  document.getElementById("range-note").textContent = spec.label;
  const to = new Date();
  const from = new Date(to - spec.ms);
  say(status, "Loading…");
  try {
    const data = await api(`${siteApi}usage/?resolution=${spec.resolution}&from=${from.toISOString()}&to=${to.toISOString()}`);
    const x = data.series.map((p) => new Date(p.t) / 1000);
    draw("chart-cpu", x, [{ label: "average", color: "#2f6fed", values: data.series.map((p) => p.cpu_percent) },
      { label: "max", color: "#9bb5f0", values: data.series.map((p) => p.cpu_percent_max) }]);
    draw("chart-memory", x, [{ label: "average", color: "#1e7b34", values: data.series.map((p) => p.memory_mb) },
      { label: "max", color: "#8fd0a1", values: data.series.map((p) => p.memory_mb_max) }]);
    draw("chart-network", x, [{ label: "MiB", color: "#8a5a00", values: data.series.map((p) => p.bandwidth_mb) }]);
    draw("chart-requests", data.requests.map((p) => new Date(p.t) / 1000),
      [{ label: "requests", color: "#b3261e", values: data.requests.map((p) => p.requests) }]);
    say(status, "");
  } catch (error) { say(status, error.message, "error"); }
}

async function daily() {
  const to = new Date();
  const from = new Date(to - 30 * 86400e3);
  const data = await api(`${siteApi}usage/?resolution=day&from=${from.toISOString()}&to=${to.toISOString()}`);
  const requests = new Map(data.requests.map((p) => [p.t, p.requests]));
  const body = document.querySelector("#daily tbody");
  const rows = data.series.slice().reverse().map((p) => el("tr", {},
    el("td", {}, new Date(p.t).toLocaleDateString(undefined, { timeZone: "UTC" })),
    ...[p.cpu_percent, p.cpu_percent_max, p.memory_mb, p.memory_mb_max, p.bandwidth_mb].map((v) => el("td", { class: "num" }, fmt.number(v, 1))),
    el("td", { class: "num" }, fmt.number(requests.get(p.t) ?? null))));
  body.replaceChildren(...rows);
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No daily rollups yet: the first appears after the site's first full day.")));
}

for (const button of document.querySelectorAll("[data-range]")) button.addEventListener("click", () => show(button.dataset.range));
show("24h");
daily().catch((error) => say(status, error.message, "error"));
