// Every site page's header: state at a glance (pending / failed / sleeping with the reason)
// and the address visitors use. Other pages refresh it with refreshSite().
import { api, badge, el, fmt, page } from "./console.js";

export const siteApi = `organizations/${encodeURIComponent(page.org.slug)}/sites/${encodeURIComponent(page.site.slug)}/`;

export function describe(site) {
  if (site.observed_state === "sleeping")
    return site.asleep_since ? `sleeping since ${fmt.time(site.asleep_since)}: wakes on its next visit` : "waking up";
  if (site.throttled_until && new Date(site.throttled_until) > new Date())
    return `${site.observed_state}, over its request limit until ${fmt.clock(site.throttled_until)} (visitors get 429)`;
  if (site.desired_state === "stopped" && site.observed_state !== "running") return "stopped";
  return site.observed_state;
}

export async function refreshSite() {
  const site = await api(siteApi);
  const state = document.getElementById("site-state");
  const said = describe(site);
  state.replaceChildren(badge(site.observed_state),
    ...(said !== site.observed_state ? [" ", el("small", { class: "muted" }, said)] : []),
    ...(site.is_private ? [" ", el("small", { class: "badge" }, "private")] : []));
  const url = document.getElementById("site-url");
  url.replaceChildren(site.url
    ? el("a", { href: site.url, target: "_blank", rel: "noopener", id: "url" }, site.url)
    : el("span", { class: "muted" }, `${site.subdomain} (its host has no proxy yet: not reachable by visitors)`));
  const reason = document.getElementById("site-reason");
  reason.hidden = site.reconcile_status === "converged";
  reason.textContent = reason.hidden ? "" : site.reconcile_status === "failed"
    ? `The engine refused the last change: ${site.reconcile_error || "no reason given"}`
    : `Pending: ${site.reconcile_error || "waiting for the engine to carry out the last change"}`;
  return site;
}

refreshSite().catch((error) => { document.getElementById("site-reason").hidden = false; document.getElementById("site-reason").textContent = error.message; });
