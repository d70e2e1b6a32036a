import { actionButton, api, bindForm } from "../console.js";

const data = JSON.parse(document.getElementById("invitation-data").textContent);
const code = encodeURIComponent(data.code);
const orgPage = `/o/${encodeURIComponent(data.organization)}/`;
const accept = document.getElementById("accept");
if (accept) {
  accept.replaceWith(actionButton("Accept and join", async () => {
    await api(`invitations/${code}/accept/`, { method: "POST" });
    location.href = orgPage;
    return "Joined.";
  }, { status: document.getElementById("invitation-status"), kind: "primary" }));
}
const register = document.getElementById("register");
if (register) {
  bindForm(register, {
    url: `invitations/${code}/register/`,
    done: () => { location.href = orgPage; return "Account created; joining…"; },
  });
}
