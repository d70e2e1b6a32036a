import { actionButton, api, badge, bindForm, can, el, fmt, listTable, page, shownOnce } from "../console.js";

const org = encodeURIComponent(page.org.slug);
const mine = `organizations/${org}/notifications/`;

function boxes(target, events, chosen, name) {
  target.replaceChildren(...Object.entries(events).map(([key, label]) =>
    el("label", { class: "inline" }, el("input", { type: "checkbox", name, value: key, checked: chosen.includes(key) }), label)));
}
const checked = (form, name) => [...form.querySelectorAll(`[name="${name}"]:checked`)].map((b) => b.value);

api(mine).then((data) => {
  boxes(document.getElementById("event-boxes"), data.events, data.email_events, "email_events");
  boxes(document.getElementById("hook-event-boxes"), data.events, ["deployment.failed"], "hook_events");
});
bindForm(document.getElementById("my-events"), {
  url: mine, method: "PATCH",
  data: (form) => ({ email_events: checked(form, "email_events") }),
  done: (data) => (data.email_events.length ? "Saved: you get these by email." : "Saved: no email from this organization."),
});

if (!can("webhooks.manage")) {
  document.getElementById("webhooks-card").replaceChildren(el("h2", {}, "Webhooks"), el("p", { class: "muted" }, page.can["webhooks.manage"].reason));
} else {
  const status = document.getElementById("hooks-status");
  const hooks = `organizations/${org}/notification-webhooks/`;
  const reload = listTable({
    table: document.getElementById("hooks"),
    url: hooks,
    empty: "No webhooks. Add one to post events to chat or an incident tool.",
    row: (h) => {
      const active = el("input", { type: "checkbox", checked: h.is_active, "aria-label": `Active: ${h.url}` });
      active.addEventListener("change", async () => {
        await api(`${hooks}${h.id}/`, { method: "PATCH", body: { is_active: active.checked } });
        status.className = "status ok"; status.textContent = `${h.url} ${active.checked ? "active" : "paused"}.`;
      });
      return el("tr", {}, el("td", {}, h.url), el("td", {}, h.events.join(", ")), el("td", {}, active),
        el("td", {}, actionButton("Remove", async () => {
          await api(`${hooks}${h.id}/`, { method: "DELETE" }); reload(); return `${h.url} removed.`;
        }, { status, kind: "danger" })));
    },
  });
  bindForm(document.getElementById("hook-add"), {
    url: hooks,
    data: (form) => ({ url: form.elements.url.value, events: checked(form, "hook_events") }),
    done: (h, form) => {
      form.elements.url.value = "";
      document.getElementById("hook-secret").replaceChildren(shownOnce("Signing secret", h.secret));
      reload();
      return "Webhook added.";
    },
  });
  listTable({
    table: document.getElementById("deliveries"),
    url: `organizations/${org}/notification-deliveries/?page_size=20`,
    empty: "Nothing sent yet.",
    row: (d) => el("tr", {}, el("td", {}, fmt.time(d.created_at)), el("td", {}, d.event),
      el("td", {}, `${d.channel}: ${d.recipient}`),
      el("td", {}, badge(d.status), d.error ? el("div", { class: "error" }, d.error) : null)),
  });
}
