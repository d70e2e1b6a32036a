import { api, badge, el, fmt, listTable, page } from "../console.js";

const org = encodeURIComponent(page.org.slug);
const filters = document.getElementById("site-filters");
function url() {
  const params = new URLSearchParams({ ordering: "name" });
  for (const [key, value] of new FormData(filters)) if (value) params.set(key, value);
  return `organizations/${org}/sites/?${params}`;
}
const reload = listTable({
  table: document.getElementById("sites"),
  url,
  empty: "No sites match. Create one with “New site”, or change the filters.",
  row: (site) => el("tr", {},
    el("td", {}, el("a", { href: `/o/${org}/sites/${encodeURIComponent(site.slug)}/` }, site.name)),
    el("td", {}, site.site_type),
    el("td", {}, badge(site.observed_state), site.reconcile_status !== "converged" ? [" ", badge(site.reconcile_status)] : null),
    el("td", {}, site.url ? el("a", { href: site.url, target: "_blank", rel: "noopener" }, site.url) : el("span", { class: "muted" }, site.subdomain))),
});
let timer;
filters.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => reload(url()), 250); });
filters.addEventListener("submit", (e) => { e.preventDefault(); reload(url()); });

api(`organizations/${org}/quota/`).then((quota) => {
  const facts = document.getElementById("quota");
  const use = quota.usage || {};
  const line = (label, used, max, unit = "") => [el("dt", {}, label), el("dd", {}, `${fmt.number(used)}${unit} of ${max === null || max === undefined ? "unlimited" : fmt.number(max) + unit}`)];
  facts.replaceChildren(
    ...line("Sites", use.sites, quota.max_sites),
    ...line("Memory", use.memory_mb, quota.max_memory_mb, " MB"),
    ...line("CPU", use.cpu_percent, quota.max_cpu_percent, " %"),
    ...line("Disk", use.disk_mb, quota.max_disk_mb, " MB"),
    el("dt", {}, "Over the limit"), el("dd", {}, quota.over_limit_policy));
}).catch((error) => { document.getElementById("quota").replaceChildren(el("dd", { class: "error" }, error.message)); });
