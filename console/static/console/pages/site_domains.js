import { actionButton, api, badge, bindForm, copyable, el, fmt, listTable } from "../console.js";
import { siteApi } from "../site_header.js";

const status = document.getElementById("domain-status");
const domainsApi = `${siteApi}domains/`;
const TLS = { acme: "ACME", internal: "internal CA", on_demand: "ACME on demand" };

function toggle(d, field, label) {
  const box = el("input", { type: "checkbox", checked: d[field], "aria-label": `${label} for ${d.hostname}`, "data-can": "domain.write" });
  box.addEventListener("change", async () => {
    try {
      await api(`${domainsApi}${d.id}/`, { method: "PATCH", body: { [field]: box.checked } });
      status.className = "status ok"; status.textContent = `${d.hostname}: ${label} ${box.checked ? "on" : "off"}.`;
      reload();
    } catch (error) { box.checked = !box.checked; status.className = "status error"; status.textContent = error.message; }
  });
  return el("label", { class: "inline" }, box, label);
}

function tlsSelect(d) {
  const select = el("select", { "aria-label": `Certificate for ${d.hostname}`, "data-can": "domain.write" },
    ...Object.entries(TLS).map(([value, label]) => el("option", { value, selected: value === d.tls_mode }, label)));
  select.addEventListener("change", async () => {
    try {
      await api(`${domainsApi}${d.id}/`, { method: "PATCH", body: { tls_mode: select.value } });
      status.className = "status ok"; status.textContent = `${d.hostname}: certificate from ${TLS[select.value]}.`;
    } catch (error) { select.value = d.tls_mode; status.className = "status error"; status.textContent = error.message; }
  });
  return select;
}

const reload = listTable({
  table: document.getElementById("domains"),
  url: `${domainsApi}?ordering=hostname`,
  empty: "No custom domains. The site answers at its own address above; add a domain below.",
  row: (d) => el("tr", {},
    el("td", {}, el("strong", {}, d.hostname), d.is_primary ? [" ", badge("primary")] : null),
    el("td", {}, d.verified_at ? ["verified ", fmt.time(d.verified_at)]
      : el("div", {}, "Add a TXT record:", el("div", {}, "Name: ", copyable(d.txt_record_name)), el("div", {}, "Value: ", copyable(d.verification_token)))),
    el("td", {}, toggle(d, "ssl_enabled", "HTTPS"), d.ssl_enabled ? tlsSelect(d) : null),
    el("td", {}, toggle(d, "is_cloudflare", "Cloudflare"), d.is_cloudflare ? toggle(d, "cloudflare_only", "only") : null),
    el("td", {}, el("div", { class: "actions", style: "margin:0" },
      d.verified_at ? null : actionButton("Verify", async () => {
        const done = await api(`${domainsApi}${d.id}/verify/`, { method: "POST" });
        reload();
        return done.verified_at ? `${d.hostname} verified: it is routed now.` : `${d.hostname}: the TXT record was not found yet.`;
      }, { status, can: "domain.write" }),
      d.is_primary ? null : actionButton("Make primary", async () => {
        await api(`${domainsApi}${d.id}/`, { method: "PATCH", body: { is_primary: true } }); reload(); return `${d.hostname} is the primary domain.`;
      }, { status, can: "domain.write" }),
      actionButton("Remove", async () => {
        if (!confirm(`Remove ${d.hostname}? It stops being routed at once.`)) return false;
        await api(`${domainsApi}${d.id}/`, { method: "DELETE" }); reload(); return `${d.hostname} removed.`;
      }, { status, can: "domain.write", kind: "danger" })))),
});

bindForm(document.getElementById("domain-add"), {
  url: domainsApi,
  done: (d, form) => { form.reset(); reload(); return `${d.hostname} added: add its TXT record, then verify.`; },
});
