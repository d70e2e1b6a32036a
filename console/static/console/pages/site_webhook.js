import { api, badge, copyable, el, fmt, listTable, say, shownOnce } from "../console.js";
import { siteApi } from "../site_header.js";

function show(hook) {
  document.getElementById("hook").replaceChildren(
    el("dt", {}, "URL"), el("dd", {}, copyable(hook.url)),
    el("dt", {}, "Branch"), el("dd", {}, hook.branch),
    el("dt", {}, "Secret"), el("dd", {}, hook.has_secret ? "set (shown only when set)" : "none yet: set one, then give it to your git host"));
}
api(`${siteApi}webhook/`).then(show).catch((error) => say("hook-status", error.message, "error"));
document.getElementById("rotate").addEventListener("click", async (event) => {
  if (event.currentTarget.disabled) return;
  say("hook-status", "");
  try {
    const hook = await api(`${siteApi}webhook/`, { method: "POST" });
    show(hook);
    document.getElementById("secret").replaceChildren(shownOnce("Webhook secret", hook.secret));
    say("hook-status", "New secret set: the old one no longer works.", "ok");
  } catch (error) { say("hook-status", error.message, "error"); }
});
listTable({
  table: document.getElementById("deliveries"),
  url: `${siteApi}deployments/?trigger=webhook&page_size=10`,
  empty: "No push has deployed this site yet.",
  row: (d) => el("tr", {}, el("td", {}, `#${d.number}`), el("td", {}, badge(d.status)), el("td", {}, d.branch || "—"),
    el("td", {}, (d.commit_hash || "").slice(0, 10) || "—"), el("td", {}, fmt.time(d.created_at))),
});
