import { actionButton, api, bindForm, can, el, fmt, listTable, page, say, shownOnce } from "../console.js";

const org = encodeURIComponent(page.org.slug);
const status = document.getElementById("member-status");
const ROLES = ["viewer", "member", "admin", "owner"];

function roleSelect(m) {
  const select = el("select", { "aria-label": `Role of ${m.user.email}`, "data-can": "members.update" },
    ...ROLES.map((r) => el("option", { value: r, selected: r === m.role }, r)));
  if (!can("members.update")) { select.disabled = true; select.title = page.can["members.update"].reason; }
  select.addEventListener("change", async () => {
    say(status, "");
    try {
      await api(`organizations/${org}/members/${m.id}/`, { method: "PATCH", body: { role: select.value } });
      say(status, `${m.user.email} is ${select.value} now.`, "ok");
    } catch (error) { select.value = m.role; say(status, error.message, "error"); }
  });
  return select;
}

const reloadMembers = listTable({
  table: document.getElementById("members"),
  url: `organizations/${org}/members/?ordering=user__email`,
  row: (m) => {
    const me = m.user.email === page.user.email;
    return el("tr", {},
      el("td", {}, m.user.display_name ? `${m.user.display_name} ` : "", el("span", { class: "muted" }, m.user.email), me ? " (you)" : ""),
      el("td", {}, roleSelect(m)), el("td", {}, fmt.time(m.created_at)),
      el("td", {}, actionButton(me ? "Leave" : "Remove", async () => {
        if (!confirm(me ? `Leave ${page.org.name}? You lose access at once.` : `Remove ${m.user.email}?`)) return false;
        await api(`organizations/${org}/members/${m.id}/`, { method: "DELETE" });
        if (me) { location.href = "/"; return "You left."; }
        reloadMembers();
        return `${m.user.email} removed.`;
      }, { status, kind: "danger", can: me ? undefined : "members.update" })));
  },
});

if (can("invitations.read")) {
  const invStatus = document.getElementById("invitation-status");
  const reloadInvitations = listTable({
    table: document.getElementById("invitations"),
    url: `organizations/${org}/invitations/`,
    empty: "No invitations. Invite someone by email above: they get a link to join.",
    row: (i) => el("tr", {}, el("td", {}, i.email), el("td", {}, i.role), el("td", {}, i.status), el("td", {}, fmt.time(i.expires_at)),
      el("td", {}, i.status === "pending" ? actionButton("Revoke", async () => {
        await api(`organizations/${org}/invitations/${i.id}/`, { method: "DELETE" }); reloadInvitations(); return `Invitation of ${i.email} revoked.`;
      }, { status: invStatus, kind: "danger" }) : null)),
  });
  bindForm(document.getElementById("invite"), {
    url: `organizations/${org}/invitations/`,
    done: (i, form) => {
      form.reset();
      reloadInvitations();
      document.getElementById("invite-link").replaceChildren(shownOnce(`Invitation link for ${i.email} (also sent by email)`, `${location.origin}/invitations/${i.code}/`));
      return `Invitation sent to ${i.email}.`;
    },
  });
} else {
  document.getElementById("invitations-box").replaceChildren(el("p", { class: "muted" }, page.can["invitations.read"].reason));
}
