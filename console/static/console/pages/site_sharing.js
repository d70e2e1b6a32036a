import { actionButton, api, bindForm, can, el, fmt, formData, listTable, page, say, shownOnce } from "../console.js";
import { refreshSite, siteApi } from "../site_header.js";

const box = document.getElementById("is-private");
const allowed = !box.disabled;  // the role may change it (console.js disabled it otherwise)
box.disabled = true;  // until the site's current setting is shown
refreshSite().then((site) => { box.checked = site.is_private; box.disabled = !allowed; });
box.addEventListener("change", async () => {
  box.disabled = true;
  try {
    const site = await api(siteApi, { method: "PATCH", body: { is_private: box.checked } });
    box.checked = site.is_private;
    await refreshSite();
    say("privacy-status", site.is_private ? "The site is private now." : "The site is public now.", "ok");
  } catch (error) { box.checked = !box.checked; say("privacy-status", error.message, "error"); }
  finally { box.disabled = !allowed; }
});

if (!can("share.manage")) {
  document.getElementById("links-card").replaceChildren(el("h2", {}, "Share links"), el("p", { class: "muted" }, page.can["share.manage"].reason));
} else {
  const expires = document.getElementById("k-expires");
  const week = new Date(Date.now() + 7 * 86400e3 - new Date().getTimezoneOffset() * 60e3);
  expires.value = week.toISOString().slice(0, 16);
  const reload = listTable({
    table: document.getElementById("links"),
    url: `${siteApi}share-links/`,
    empty: "No share links yet.",
    row: (l) => el("tr", {}, el("td", {}, l.label || "—"), el("td", {}, fmt.time(l.expires_at)), el("td", { class: "num" }, fmt.number(l.uses)),
      el("td", {}, fmt.time(l.last_used_at)), el("td", {}, l.active ? "active" : l.revoked_at ? "revoked" : "expired"),
      el("td", {}, l.active ? actionButton("Revoke", async () => {
        await api(`${siteApi}share-links/${l.id}/`, { method: "DELETE" }); reload(); return "Link revoked: its holders are out at once.";
      }, { status: document.getElementById("links-status"), kind: "danger" }) : null)),
  });
  bindForm(document.getElementById("link-add"), {
    url: `${siteApi}share-links/`,
    data: (f) => { const data = formData(f); if (data.expires_at) data.expires_at = new Date(data.expires_at).toISOString(); return data; },
    done: (link) => {
      document.getElementById("new-link").replaceChildren(link.url ? shownOnce("Share link", link.url)
        : shownOnce("Share token (the site's host has no proxy yet: add ?hp_share=<token> to its address)", link.token));
      reload();
      return "Link created.";
    },
  });
}

