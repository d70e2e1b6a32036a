import { actionButton, api, bindForm, el } from "../console.js";

bindForm(document.getElementById("profile"), { url: "me/", method: "PATCH" });
bindForm(document.getElementById("password"), {
  url: "me/password/",
  done: (_, form) => { form.reset(); return "Password changed. Your other sessions have ended."; },
});
const status = document.getElementById("sessions-status");
const old = document.getElementById("sign-out-everywhere");
old.replaceWith(actionButton("Sign out everywhere else", async () => {
  await api("me/sign-out-everywhere/", { method: "POST" });
  return "Every other session has ended.";
}, { status, kind: "danger" }));
api("me/").then((me) => {
  document.getElementById("memberships").replaceChildren(...me.memberships.map((m) =>
    el("li", {}, el("a", { href: `/o/${encodeURIComponent(m.organization)}/` }, m.organization_name), ` — ${m.role}`)));
});
