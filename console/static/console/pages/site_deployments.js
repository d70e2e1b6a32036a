import { actionButton, api, badge, bindForm, can, el, fmt, listTable, poll } from "../console.js";
import { refreshSite, siteApi } from "../site_header.js";

const rowStatus = document.getElementById("row-status");
const ACTIVE = ["queued", "cloning", "building", "starting", "healthy"];
let stopLog = null;

function duration(d) {
  if (!d.started_at) return "—";
  const end = d.finished_at ? new Date(d.finished_at) : new Date();
  return fmt.seconds((end - new Date(d.started_at)) / 1000);
}

/** The build log, polled with `after` (no connection held open) until the deployment ends. */
function showLog(d) {
  if (stopLog) stopLog();
  const log = document.getElementById("log");
  log.textContent = "";
  document.getElementById("log-title").textContent = `#${d.number}`;
  const note = document.getElementById("log-note");
  note.textContent = "Loading…";
  let after = -1;
  stopLog = poll(async () => {
    const data = await api(`${siteApi}deployments/${d.id}/log/?after=${after}`);
    if (data.truncated_before && after < 0) log.append(`[… earlier output dropped: logs keep their last part]\n`);
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    for (const chunk of data.chunks) log.append(chunk.text);
    if (atBottom) log.scrollTop = log.scrollHeight;
    after = data.next_after;
    note.replaceChildren("Status: ", badge(data.status), data.finished ? " — finished." : " — live, updating every 2 s.");
    if (data.finished) { await findServing(); reload(); refreshSite(); }
    return !data.finished;
  }, 2000);
}

function showRestore(d) {
  const box = document.getElementById("restore");
  const config = d.config || { site: {}, limits: {}, env: [] };
  box.hidden = false;
  box.replaceChildren(el("h2", {}, `Roll back to #${d.number}?`),
    el("p", {}, "A new deployment runs this deployment's image with the configuration it ran with:"),
    el("dl", { class: "facts" },
      ...Object.entries(config.site).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v === "" || v === null ? "—" : String(v))]),
      ...Object.entries(config.limits).flatMap(([k, v]) => [el("dt", {}, `limit ${k}`), el("dd", {}, v === null ? "—" : fmt.number(v))]),
      el("dt", {}, "environment"), el("dd", {}, config.env.map((v) => v.key + (v.is_secret ? " (secret)" : "")).join(", ") || "none")),
    el("div", { class: "actions" },
      actionButton(`Roll back to #${d.number}`, async () => {
        const made = await api(`${siteApi}deployments/${d.id}/rollback/`, { method: "POST" });
        box.hidden = true;
        reload();
        showLog(made);
        return `Rollback #${made.number} queued.`;
      }, { status: rowStatus, can: "deploy", kind: "primary" }),
      el("button", { type: "button", onclick: () => { box.hidden = true; } }, "Cancel")));
  box.scrollIntoView({ block: "nearest" });
}

// The newest succeeded deployment serves now: rolling back to it would change nothing.
let servingId = null;
async function findServing() {
  const data = await api(`${siteApi}deployments/?status=succeeded&page_size=1`);
  servingId = data.results.length ? data.results[0].id : null;
}
await findServing();

const reload = listTable({
  table: document.getElementById("deployments"),
  url: `${siteApi}deployments/?page_size=20`,
  empty: "No deployments yet. Deploy the site's branch with the button above.",
  row: (d) => el("tr", { id: `deployment-${d.id}` },
    el("td", {}, `#${d.number}`, d.rollback_of ? el("small", { class: "muted" }, " rollback") : null),
    el("td", {}, badge(d.status), d.error ? el("div", { class: "error" }, d.error) : null),
    el("td", {}, d.trigger), el("td", {}, d.triggered_by || "—"),
    el("td", {}, d.commit_hash ? el("span", { title: d.commit_message || "" }, d.commit_hash.slice(0, 10)) : "—"),
    el("td", {}, fmt.time(d.started_at || d.created_at)), el("td", { class: "num" }, duration(d)),
    el("td", {}, el("div", { class: "actions", style: "margin:0" },
      el("button", { type: "button", onclick: () => showLog(d) }, "Log"),
      ACTIVE.includes(d.status) && !d.cancel_requested ? actionButton("Cancel", async () => {
        await api(`${siteApi}deployments/${d.id}/cancel/`, { method: "POST" }); reload(); return `Cancel of #${d.number} asked.`;
      }, { status: rowStatus, can: "deploy" }) : null,
      d.status === "succeeded" && can("deploy") && d.id !== servingId ? el("button", { type: "button", onclick: () => showRestore(d) }, "Roll back to this") : null))),
  onPage: (data) => {
    const wanted = location.hash.replace("#deployment-", "");
    const chosen = data.results.find((d) => d.id === wanted) || data.results.find((d) => ACTIVE.includes(d.status));
    if (chosen && !stopLog) showLog(chosen);
  },
});

bindForm(document.getElementById("deploy-form"), {
  url: `${siteApi}deployments/`,
  done: (d) => { reload(); showLog(d); return `Deployment #${d.number} queued.`; },
});
