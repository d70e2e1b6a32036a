import { actionButton, api, bindForm, el, fmt, listTable, shownOnce } from "../console.js";

const status = document.getElementById("tokens-status");
api("organizations/?page_size=200&ordering=name").then((data) => {
  document.getElementById("t-org").append(...data.results.map((o) => el("option", { value: o.slug }, o.name)));
});
api("me/two-factor/").then((state) => { document.getElementById("t-otp-field").hidden = !state.enabled; });
const reload = listTable({
  table: document.getElementById("tokens"),
  url: "tokens/?ordering=-created_at",
  empty: "No tokens yet. Create one for a script or CI; it acts as you, within its scopes.",
  row: (t) => el("tr", {},
    el("td", {}, t.name), el("td", {}, el("code", {}, t.prefix)), el("td", {}, t.scopes.join(", ")),
    el("td", {}, t.organization || "all"), el("td", {}, t.expires_at ? fmt.time(t.expires_at) : "never"),
    el("td", {}, t.last_used_at ? `${fmt.time(t.last_used_at)} from ${t.last_used_ip || "?"}` : "never"),
    el("td", {}, t.is_active ? actionButton("Revoke", async () => {
      if (!confirm(`Revoke ${t.name}? Anything using it stops working at once.`)) return false;
      await api(`tokens/${t.id}/`, { method: "DELETE" }); reload(); return `${t.name} revoked.`;
    }, { status, kind: "danger" }) : t.revoked_at ? "revoked" : "expired")),
});
bindForm(document.getElementById("new-token"), {
  url: "tokens/",
  data: (form) => {
    const scopes = [...form.querySelectorAll("[name=scope]:checked")].map((b) => b.value);
    const data = { name: form.elements.name.value, scopes, organization: form.elements.organization.value || null };
    if (form.elements.otp_code.value) data.otp_code = form.elements.otp_code.value;
    if (form.elements.expires_at.value) data.expires_at = new Date(form.elements.expires_at.value + "T23:59:59").toISOString();
    return data;
  },
  done: (t, form) => {
    document.getElementById("new-token-value").replaceChildren(shownOnce(`Token ${t.name}`, t.token));
    form.reset();
    reload();
    return "Token created.";
  },
});
