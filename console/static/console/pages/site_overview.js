import { actionButton, api, badge, el, fmt, listTable, page, poll } from "../console.js";
import { refreshSite, siteApi } from "../site_header.js";

const status = document.getElementById("action-status");
const deploymentsPage = `/o/${encodeURIComponent(page.org.slug)}/sites/${encodeURIComponent(page.site.slug)}/deployments/`;

function fact(label, value) { return [el("dt", {}, label), el("dd", {}, value)]; }

async function show() {
  const site = await refreshSite();
  const health = site.health;
  document.getElementById("facts").replaceChildren(
    ...fact("Wanted", site.desired_state),
    ...fact("Observed", badge(site.observed_state)),
    ...fact("Reconcile", [badge(site.reconcile_status), site.reconciled_at ? ` at ${fmt.time(site.reconciled_at)}` : ""]),
    ...fact("Health", health ? [badge(health.status), health.last_checked_at ? ` checked ${fmt.time(health.last_checked_at)}` : "",
      health.last_response_time_ms !== null ? `, ${fmt.number(health.last_response_time_ms)} ms` : ""] : "not checked yet"),
    ...fact("Type", site.site_type),
    ...fact(site.site_type === "docker" ? "Image" : "Repository", site.site_type === "docker" ? site.image || "—" : `${site.repository_url || "—"} (${site.branch || "default branch"})`),
    ...fact("Host", site.host || "—"),
    ...fact("Needs restart", site.needs_restart ? "yes: a changed setting applies at the next restart" : "no"));
  const data = await api(`${siteApi}deployments/?page_size=5`);
  const current = data.results.find((d) => d.status === "succeeded");
  const latest = data.results[0];
  const box = document.getElementById("current");
  box.replaceChildren(el("div", {}, current ? el("dl", { class: "facts" },
      ...fact("Number", el("a", { href: `${deploymentsPage}#deployment-${current.id}` }, `#${current.number}`)),
      ...fact("Commit", current.commit_hash ? `${current.commit_hash.slice(0, 10)} ${current.commit_message || ""}` : "—"),
      ...fact("Finished", fmt.time(current.finished_at)),
      ...fact("By", current.triggered_by || current.trigger))
    : el("p", { class: "empty" }, "No successful deployment yet: press Deploy."),
    latest && latest !== current ? el("p", {}, "Latest: ", el("a", { href: deploymentsPage }, `#${latest.number}`), " ", badge(latest.status), latest.error ? ` — ${latest.error}` : "") : null));
  return site;
}

const act = (verb) => async () => {
  const site = await api(`${siteApi}${verb}/`, { method: "POST" });
  await show();
  return site.reconcile_status === "converged" ? `${verb[0].toUpperCase() + verb.slice(1)}: done (${site.observed_state}).` : `${verb}: asked; the engine has not carried it out yet (a worker retries).`;
};
document.getElementById("site-actions").append(
  actionButton("Start", act("start"), { status, can: "site.act" }),
  actionButton("Stop", act("stop"), { status, can: "site.act" }),
  actionButton("Restart", act("restart"), { status, can: "site.act" }),
  actionButton("Deploy", async () => {
    const deployment = await api(`${siteApi}deployments/`, { method: "POST", body: {} });
    location.href = `${deploymentsPage}#deployment-${deployment.id}`;
    return `Deployment #${deployment.number} queued.`;
  }, { status, can: "deploy", kind: "primary" }));

const reloadContainers = listTable({
  table: document.getElementById("containers"),
  url: `${siteApi}containers/?page_size=20`,
  empty: "No container yet: Start or Deploy the site.",
  row: (c) => el("tr", {}, el("td", {}, el("code", {}, c.name)),
    el("td", {}, badge(c.state), c.retired_at ? el("small", { class: "muted" }, ` retired ${fmt.time(c.retired_at)}`) : null),
    el("td", {}, c.image), el("td", {}, c.host || "—"), el("td", {}, fmt.time(c.created))),
});
poll(async () => { await show(); reloadContainers(); }, 5000);
