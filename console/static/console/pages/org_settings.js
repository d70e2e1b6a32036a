import { api, bindForm, confirmTyped, el, fmt, page, say } from "../console.js";

const org = encodeURIComponent(page.org.slug);
bindForm(document.getElementById("org-settings"), {
  url: `organizations/${org}/`,
  method: "PATCH",
  done: (changed) => {
    if (changed.slug !== page.org.slug) { location.href = `/o/${encodeURIComponent(changed.slug)}/settings/`; return "Saved; moving…"; }
    return "Saved.";
  },
});
api(`organizations/${org}/quota/`).then((q) => {
  document.getElementById("quota").replaceChildren(
    el("dt", {}, "Sites"), el("dd", {}, `${fmt.number(q.usage.sites)} of ${fmt.number(q.max_sites)}`),
    el("dt", {}, "Memory"), el("dd", {}, `${fmt.number(q.usage.memory_mb)} of ${fmt.number(q.max_memory_mb)} MB`),
    el("dt", {}, "CPU"), el("dd", {}, `${fmt.number(q.usage.cpu_percent)} of ${fmt.number(q.max_cpu_percent)} %`),
    el("dt", {}, "Disk"), el("dd", {}, `${fmt.number(q.usage.disk_mb)} of ${fmt.number(q.max_disk_mb)} MB`),
    el("dt", {}, "Over the limit"), el("dd", {}, q.over_limit_policy), el("dt", {}, "Changed by"), el("dd", {}, "the platform's staff"));
}).catch((error) => document.getElementById("quota").replaceChildren(el("dd", { class: "error" }, error.message)));
document.getElementById("delete-org")?.addEventListener("click", async (event) => {
  if (event.currentTarget.disabled) return;
  if (!(await confirmTyped(`the organization ${page.org.name}`, page.org.slug))) return;
  try { await api(`organizations/${org}/`, { method: "DELETE" }); location.href = "/"; }
  catch (error) { say("delete-status", error.message, "error"); }
});
