import { api, bindForm, can, confirmTyped, fmt, formData, page, say } from "../console.js";
import { refreshSite, siteApi } from "../site_header.js";

const form = document.getElementById("site-settings");
function showVolume(site) {
  const facts = document.getElementById("volume-facts");
  const link = document.getElementById("volume-download");
  const measured = site.volume_bytes === null ? "not measured yet" : `${fmt.bytes(site.volume_bytes)} (measured ${fmt.time(site.volume_measured_at)})`;
  facts.textContent = site.persistent_volume ? `On: /data holds ${measured}.` : site.volume_bytes === null ? "Off: the site has no /data volume." : `Off: the volume is kept (${measured}) and comes back when you turn it on.`;
  if (can("site.volume")) link.href = `/api/v1/${siteApi}volume-archive/`;
  link.hidden = !site.persistent_volume && site.volume_bytes === null;
}
refreshSite().then((site) => {
  for (const field of form.elements) {
    if (!field.name || !(field.name in site)) continue;
    if (field.type === "checkbox") field.checked = Boolean(site[field.name]);
    else field.value = site[field.name] ?? "";
  }
  showVolume(site);
});
bindForm(form, {
  url: siteApi,
  method: "PATCH",
  done: async (site) => { showVolume(await refreshSite()); return site.needs_restart ? "Saved; restart the site (or deploy) to apply it." : "Saved."; },
  data: (f) => formData(f),
});
document.getElementById("delete-site").addEventListener("click", async (event) => {
  if (event.currentTarget.disabled) return;
  if (!(await confirmTyped(`the site ${page.site.name}`, page.site.slug))) return;
  try {
    await api(siteApi, { method: "DELETE" });
    location.href = `/o/${encodeURIComponent(page.org.slug)}/`;
  } catch (error) { say("delete-status", error.message, "error"); }
});
