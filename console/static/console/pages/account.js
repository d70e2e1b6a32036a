import { actionButton, api, bindForm, copyable, el, fmt, shownOnce } from "../console.js";

bindForm(document.getElementById("profile"), { url: "me/", method: "PATCH" });
bindForm(document.getElementById("password"), {
  url: "me/password/",
  done: (_, form) => { form.reset(); loadSessions(); return "Password changed. Your other sessions have ended."; },
});

// --- two-factor sign-in -------------------------------------------------------------------
const $ = (id) => document.getElementById(id);

function recoveryCodes(codes, news) {
  $("tf-codes").replaceChildren(
    el("p", { class: "status ok", role: "status" }, news),
    shownOnce("Recovery codes", codes.join("  ")),
    el("p", { class: "muted" }, "Each works once, in place of the app's code, if you lose the phone."));
}

async function loadTwoFactor() {
  const state = await api("me/two-factor/");
  $("tf-state").textContent = state.enabled
    ? `On since ${fmt.time(state.confirmed_at)}.`
    : state.required ? "Off — required for your account." : "Off.";
  $("tf-begin").hidden = state.enabled;
  $("tf-on").hidden = !state.enabled;
  if (state.enabled) $("tf-setup").hidden = true;
  $("tf-left").textContent = `${state.recovery_codes_left} of 10 unused.`;
}

bindForm($("tf-begin"), {
  url: "me/two-factor/",
  done: (made, form) => {
    form.reset();
    $("tf-qr").src = made.qr_code;
    $("tf-secret").replaceChildren("Secret: ", copyable(made.secret));
    $("tf-setup").hidden = false;
    $("tf-confirm-code").focus();
    return "Now confirm with a code from the app.";
  },
});
bindForm($("tf-confirm"), {
  url: "me/two-factor/confirm/",
  done: async (result, form) => {
    form.reset();
    recoveryCodes(result.recovery_codes, "Two-factor sign-in is on.");
    await loadTwoFactor();
  },
});
bindForm($("tf-renew"), {
  url: "me/two-factor/recovery-codes/",
  done: async (result, form) => {
    form.reset();
    recoveryCodes(result.recovery_codes, "New recovery codes; the old ones no longer work.");
    await loadTwoFactor();
  },
});
bindForm($("tf-disable"), {
  url: "me/two-factor/disable/",
  done: async (_, form) => { form.reset(); $("tf-codes").replaceChildren(); await loadTwoFactor(); return "Two-factor sign-in is off."; },
});
loadTwoFactor();

// --- sessions -------------------------------------------------------------------------------
const status = $("sessions-status");
async function loadSessions() {
  const rows = await api("me/sessions/");
  $("sessions").tBodies[0].replaceChildren(...rows.map((s) => el("tr", {},
    el("td", {}, s.user_agent || "unknown browser", s.current ? " (this one)" : ""),
    el("td", {}, s.ip || "—"),
    el("td", {}, fmt.time(s.created_at), s.second_factor ? ` · with ${s.second_factor === "totp" ? "the app" : "a recovery code"}` : ""),
    el("td", {}, fmt.time(s.last_seen_at)),
    el("td", {}, s.current ? "" : actionButton("Sign out", async () => {
      await api(`me/sessions/${s.id}/`, { method: "DELETE" });
      await loadSessions();
      return "That session has ended.";
    }, { status, kind: "danger" })))));
}
$("sign-out-everywhere").replaceWith(actionButton("Sign out everywhere else", async () => {
  await api("me/sign-out-everywhere/", { method: "POST" });
  await loadSessions();
  return "Every other session has ended.";
}, { status, kind: "danger" }));
loadSessions();

api("me/").then((me) => {
  document.getElementById("memberships").replaceChildren(...me.memberships.map((m) =>
    el("li", {}, el("a", { href: `/o/${encodeURIComponent(m.organization)}/` }, m.organization_name), ` — ${m.role}`)));
});
