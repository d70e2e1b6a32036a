import { actionButton, api, bindForm, copyable, el, fmt, listTable, page } from "../console.js";
import { refreshSite, siteApi } from "../site_header.js";

const status = document.getElementById("ports-status");
const portsApi = `${siteApi}port-forwards/`;

function showQuota() {
  api(`organizations/${encodeURIComponent(page.org.slug)}/quota/`).then((q) => {
    document.getElementById("ports-quota").textContent = `The organization uses ${fmt.number(q.usage.port_forwards)} of ${fmt.number(q.max_port_forwards)}.`;
  }).catch(() => {});
}

const reload = listTable({
  table: document.getElementById("ports"),
  url: `${portsApi}?ordering=public_port`,
  empty: "No port is forwarded: visitors reach the site through its web address only.",
  row: (f) => el("tr", {},
    el("td", {}, copyable(`${f.address}:${f.public_port}`)),
    el("td", {}, String(f.container_port)),
    el("td", {}, fmt.time(f.created_at)),
    el("td", {}, actionButton("Remove", async () => {
      if (!confirm(`Stop forwarding ${f.address}:${f.public_port}? The site restarts.`)) return false;
      await api(`${portsApi}${f.id}/`, { method: "DELETE" });
      reload(); showQuota(); refreshSite();
      return `${f.address}:${f.public_port} released.`;
    }, { status, can: "ports.manage", kind: "danger" }))),
});
showQuota();

bindForm(document.getElementById("port-add"), {
  url: portsApi,
  done: (f, form) => { form.reset(); reload(); showQuota(); refreshSite(); return `Container port ${f.container_port} is at ${f.address}:${f.public_port}.`; },
});
