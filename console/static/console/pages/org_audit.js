// The organization's audit feed: sentences, filters, cursor pages. A deployment's stage
// changes (deployment.progress) are folded into the entry that asked for it.
import { api, can, el, fmt, listTable, page } from "../console.js";

const org = encodeURIComponent(page.org.slug);
const filters = document.getElementById("audit-filters");

function url() {
  const params = new URLSearchParams({ exclude_action: "deployment.progress", page_size: "50" });
  for (const [key, value] of new FormData(filters)) {
    if (!value) continue;
    params.set(key, key === "since" || key === "until" ? new Date(value).toISOString() : value);
  }
  return `organizations/${org}/audit-logs/?${params}`;
}

function stagesOf(entry) {
  const details = el("details", {}, el("summary", {}, "stages"));
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    const data = await api(`organizations/${org}/audit-logs/?action=deployment.progress&target_id=${encodeURIComponent(entry.target_id)}&page_size=50`);
    details.append(el("ul", {}, ...data.results.slice().reverse().map((p) =>
      el("li", {}, `${fmt.clock(p.timestamp)} ${(p.changes && p.changes.status && p.changes.status.after) || p.summary}`))));
  }, { once: false });
  return details;
}

if (!can("audit.read")) {
  document.getElementById("audit-box").replaceChildren(el("p", { class: "muted" }, page.can["audit.read"].reason));
} else {
  const reload = listTable({
    table: document.getElementById("audit"),
    url,
    empty: "Nothing recorded for these filters.",
    row: (e) => el("tr", {},
      el("td", {}, el("time", { datetime: e.timestamp }, fmt.time(e.timestamp))),
      el("td", {}, e.summary, e.action === "deployment.create" ? stagesOf(e) : null,
        el("div", { class: "muted" }, el("small", {}, e.action))),
      el("td", {}, el("small", { class: "muted" }, e.ip || (e.token_id ? "API token" : "—")))),
  });
  api(`organizations/${org}/members/?page_size=500&ordering=user__email`).then((data) => {
    document.getElementById("a-actor").append(...data.results.map((m) => el("option", { value: m.user.id }, m.user.email)));
  }).catch(() => {});
  let timer;
  filters.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => reload(url()), 300); });
  filters.addEventListener("submit", (e) => { e.preventDefault(); reload(url()); });
}
