import { api, bindForm, el, fmt, page } from "../console.js";
import { siteApi } from "../site_header.js";

const form = document.getElementById("limits");
const fill = (limits) => { for (const [k, v] of Object.entries(limits)) if (form.elements.namedItem(k)) form.elements.namedItem(k).value = v ?? ""; };

async function showUse() {
  const now = new Date();
  const data = await api(`${siteApi}usage/?resolution=raw&from=${new Date(now - 600e3).toISOString()}&to=${now.toISOString()}`);
  const last = data.series[data.series.length - 1];
  document.getElementById("use-memory").textContent = last ? `in use now: ${fmt.number(last.memory_mb, 1)} MB` : "no sample in the last 10 minutes";
  document.getElementById("use-cpu").textContent = last ? `in use now: ${fmt.number(last.cpu_percent, 1)} %` : "";
}

api(`${siteApi}limits/`).then(fill);
showUse().catch(() => {});
bindForm(form, {
  url: `${siteApi}limits/`,
  method: "PATCH",
  data: (f) => Object.fromEntries(Object.entries(Object.fromEntries([...f.elements].filter((e) => e.name).map((e) => [e.name, e.value === "" ? null : Number(e.value)])))),
  done: (limits) => { fill(limits); return "Limits saved."; },
});
api(`organizations/${encodeURIComponent(page.org.slug)}/quota/`).then((q) => {
  document.getElementById("quota").replaceChildren(
    el("dt", {}, "Memory"), el("dd", {}, `${fmt.number(q.usage.memory_mb)} of ${fmt.number(q.max_memory_mb)} MB reserved by all sites`),
    el("dt", {}, "CPU"), el("dd", {}, `${fmt.number(q.usage.cpu_percent)} of ${fmt.number(q.max_cpu_percent)} %`),
    el("dt", {}, "Disk"), el("dd", {}, `${fmt.number(q.usage.disk_mb)} of ${fmt.number(q.max_disk_mb)} MB`),
    el("dt", {}, "Sites"), el("dd", {}, `${fmt.number(q.usage.sites)} of ${fmt.number(q.max_sites)}`));
}).catch(() => {});
