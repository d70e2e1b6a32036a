import { actionButton, api, ApiError, bindForm, can, el, fmt, listTable, say } from "../console.js";
import { refreshSite, siteApi } from "../site_header.js";

const status = document.getElementById("env-status");
const envApi = `${siteApi}env/`;

/** KEY=value lines of a .env file: `export`, quotes and comments handled. */
export function parseDotenv(text) {
  const pairs = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = line.replace(/^export\s+/, "").match(/^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/);
    if (!match) { pairs.push({ error: `Not KEY=value: ${line.slice(0, 40)}` }); continue; }
    let value = match[2];
    if (/^".*"$/.test(value)) value = value.slice(1, -1).replace(/\\n/g, "\n").replace(/\\"/g, '"');
    else if (/^'.*'$/.test(value)) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, "");
    pairs.push({ key: match[1], value });
  }
  return pairs;
}

function valueCell(v) {
  const cell = el("td", {}, el("code", {}, v.value));
  if (v.is_secret && can("env.reveal")) {
    cell.append(" ", actionButton("Reveal", async () => {
      const shown = await api(`${envApi}${v.id}/reveal/`, { method: "POST" });
      cell.firstChild.textContent = shown.value;
      return `Revealed ${v.key} (recorded in the audit log).`;
    }, { status }));
  }
  return cell;
}

/** Edit in place: the value cell becomes a field with Save and Cancel (Enter saves,
 * Escape cancels); a secret's field starts empty, since its value is never sent here. */
function editButton(v) {
  const button = actionButton("Edit", async () => {
    const row = button.closest("tr");
    const cell = row.children[1];
    const input = el("input", { value: v.is_secret ? "" : v.value, "aria-label": `New value for ${v.key}`,
      placeholder: v.is_secret ? "new secret value" : "", autocomplete: "off" });
    const save = el("button", { type: "button", class: "primary" }, "Save");
    const cancel = el("button", { type: "button" }, "Cancel");
    const before = [...cell.childNodes];
    cell.replaceChildren(input, " ", save, " ", cancel);
    input.focus();
    cancel.addEventListener("click", () => cell.replaceChildren(...before));
    save.addEventListener("click", async () => {
      save.disabled = true;
      try {
        await api(`${envApi}${v.id}/`, { method: "PATCH", body: { value: input.value } });
        say(status, `${v.key} changed; it applies at the next restart.`, "ok");
        reload(); refreshSite();
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        say(status, error.message, "error");
        save.disabled = false;
      }
    });
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") save.click(); if (e.key === "Escape") cancel.click(); });
    return false;
  }, { status, can: "env.write" });
  return button;
}

const reload = listTable({
  table: document.getElementById("env"),
  url: `${envApi}?ordering=key&page_size=100`,
  empty: "No variables yet. Add one below or paste a .env file.",
  row: (v) => el("tr", {},
    el("td", {}, el("code", {}, v.key)), valueCell(v), el("td", {}, v.is_secret ? "yes" : "no"),
    el("td", {}, fmt.time(v.updated_at)),
    el("td", {}, el("div", { class: "actions", style: "margin:0" }, editButton(v),
      actionButton("Delete", async () => {
        if (!confirm(`Remove ${v.key}?`)) return false;
        await api(`${envApi}${v.id}/`, { method: "DELETE" });
        reload(); refreshSite();
        return `${v.key} removed.`;
      }, { status, can: "env.write", kind: "danger" })))),
});

bindForm(document.getElementById("env-add"), {
  url: envApi,
  done: (v, form) => { form.reset(); reload(); refreshSite(); return `${v.key} set; it applies at the next restart.`; },
});

const paste = document.getElementById("env-paste");
paste.addEventListener("submit", async (event) => {
  event.preventDefault();
  const note = paste.querySelector(".status");
  const pairs = parseDotenv(paste.elements.dotenv.value);
  const secret = paste.elements.secret.checked;
  const existing = new Map();
  for (let url = `${envApi}?page_size=500`; url;) {
    const page = await api(url);
    for (const v of page.results) existing.set(v.key, v);
    url = page.next ? new URL(page.next).pathname + new URL(page.next).search : null;
  }
  const problems = pairs.filter((p) => p.error).map((p) => p.error);
  let done = 0;
  for (const pair of pairs.filter((p) => !p.error)) {
    try {
      const known = existing.get(pair.key);
      if (known) await api(`${envApi}${known.id}/`, { method: "PATCH", body: { value: pair.value, is_secret: secret || known.is_secret } });
      else await api(envApi, { method: "POST", body: { key: pair.key, value: pair.value, is_secret: secret } });
      done += 1;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      problems.push(`${pair.key}: ${error.message}`);
    }
  }
  reload(); refreshSite();
  say(note, `${done} variable(s) set.${problems.length ? " Not set: " + problems.join("; ") : ""}`, problems.length ? "error" : "ok");
  if (!problems.length) paste.reset();
});
