import { api, bindForm, confirmTyped, formData, page, say } from "../console.js";
import { refreshSite, siteApi } from "../site_header.js";

const form = document.getElementById("site-settings");
refreshSite().then((site) => {
  for (const field of form.elements) if (field.name && field.name in site) field.value = site[field.name] ?? "";
});
bindForm(form, {
  url: siteApi,
  method: "PATCH",
  done: async (site) => { await refreshSite(); return site.needs_restart ? "Saved; restart the site (or deploy) to apply it." : "Saved."; },
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
