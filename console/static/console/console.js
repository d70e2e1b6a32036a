// The console's few shared pieces. Pages call the same REST API integrators use (with the
// session and the CSRF token); nothing here reaches the models another way.

export const page = JSON.parse(document.getElementById("page-data")?.textContent || "{}");

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `The server answered ${status}.`);
    this.status = status;
    this.fields = (body && body.fields) || {};
  }
}

function csrfToken() {
  const pair = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return pair ? decodeURIComponent(pair.split("=")[1]) : "";
}

/** JSON from the API. `path` is under /api/v1/ unless it starts with "/". */
export async function api(path, { method = "GET", body, text = false } = {}) {
  const url = path.startsWith("/") ? path : "/api/v1/" + path;
  const headers = { Accept: text ? "text/plain, */*" : "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { detail: "The panel could not be reached. Check the connection." });
  }
  if (response.status === 204) return null;
  if (text && response.ok) return response.text();
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.status === 401 || (data && data.code === "not_authenticated")) {
    // Signed out (elsewhere, or the session expired): to the sign-in, then back here.
    location.assign(`/login/?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(response.status, { detail: "Your session has ended: signing you in again…" });
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** An element: el("a", {href: "/x", class: "y"}, "text", child). Text is never parsed as HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** Numbers and times for people: the viewer's time zone and locale, no 16-digit floats. */
export const fmt = {
  time: (iso) => (iso ? dateTime.format(new Date(iso)) : "—"),
  clock: (iso) => (iso ? timeOnly.format(new Date(iso)) : "—"),
  number: (n, digits = 0) =>
    n === null || n === undefined || Number.isNaN(Number(n)) ? "—"
      : Number(n).toLocaleString(undefined, { maximumFractionDigits: digits }),
  bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let value = Number(n), unit = 0;
    while (Math.abs(value) >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${value.toLocaleString(undefined, { maximumFractionDigits: unit ? 1 : 0 })} ${units[unit]}`;
  },
  seconds(s) {
    if (s === null || s === undefined) return "—";
    return s < 60 ? `${fmt.number(s, 1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  },
};

/** A status line (aria-live): text and kind ("ok", "error" or "" for plain). */
export function say(target, text, kind = "") {
  const node = typeof target === "string" ? document.getElementById(target) : target;
  if (!node) return;
  node.textContent = text || "";
  node.className = "status" + (kind ? " " + kind : "");
}

/** The form's fields as the API wants them: checkboxes are booleans, number inputs numbers
 * (empty: null), other empty fields left out unless marked data-keep-empty. */
export function formData(form) {
  const data = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled || field.type === "submit" || field.type === "button") continue;
    if (field.type === "checkbox") data[field.name] = field.checked;
    else if (field.type === "number") data[field.name] = field.value === "" ? null : Number(field.value);
    else if (field.type === "radio") { if (field.checked) data[field.name] = field.value; }
    else if (field.value !== "" || "keepEmpty" in field.dataset) data[field.name] = field.value;
  }
  return data;
}

function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
}

function showErrors(form, error) {
  let placed = false;
  for (const [name, messages] of Object.entries(error.fields || {})) {
    const field = form.elements.namedItem(name);
    if (!field || !(field instanceof Element)) continue;
    field.setAttribute("aria-invalid", "true");
    const note = el("div", { class: "field-error", id: `${field.id || name}-error` },
      [].concat(messages).map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" "));
    field.setAttribute("aria-describedby", note.id);
    field.after(note);
    placed = true;
  }
  return placed;
}

/** Submits the form to the API: busy state, field errors beside their fields, a message in
 * the form's .status, cleared by the next submit. `done` gets the API's answer. */
export function bindForm(form, { url, method = "POST", data = formData, done, success = "Saved." }) {
  const status = form.querySelector(".status") || form.appendChild(el("p", { class: "status", role: "status", "aria-live": "polite" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = form.querySelector("[type=submit]");
    clearErrors(form);
    say(status, "");
    if (submit) { submit.disabled = true; submit.setAttribute("aria-busy", "true"); }
    try {
      const target = typeof url === "function" ? url(form) : url;
      const result = await api(target, { method: typeof method === "function" ? method(form) : method, body: data(form) });
      const message = done ? await done(result, form) : undefined;
      say(status, message === undefined ? success : message, "ok");
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const placed = showErrors(form, error);
      say(status, placed ? "Please correct the marked fields." : error.message, "error");
    } finally {
      if (submit) { submit.disabled = false; submit.removeAttribute("aria-busy"); }
    }
  });
}

/** A button that runs `work` with a busy state and reports into `status`. */
export function actionButton(label, work, { status, can, kind = "", success } = {}) {
  const button = el("button", { type: "button", class: kind }, label);
  if (can) gateOne(button, can);
  button.addEventListener("click", async () => {
    if (button.getAttribute("aria-disabled") === "true") return;
    if (status) say(status, "");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const message = await work();
      if (status && message !== false) say(status, message || success || "Done.", "ok");
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (status) say(status, error.message, "error");
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
  return button;
}

function gateOne(node, key) {
  const ability = (page.can || {})[key];
  if (!ability || ability.allowed) return;
  node.setAttribute("aria-disabled", "true");
  if (node.tagName === "BUTTON" || node.tagName === "INPUT" || node.tagName === "SELECT" || node.tagName === "TEXTAREA") node.disabled = true;
  node.title = ability.reason;
  const reasonId = `why-${key.replace(/\W/g, "-")}`;
  if (!document.getElementById(reasonId)) document.body.append(el("span", { id: reasonId, hidden: true }, ability.reason));
  node.setAttribute("aria-describedby", reasonId);
}

/** Disables what the viewer's role cannot do ([data-can]), with the reason as its title;
 * a whole form with data-can has its fields and buttons disabled. */
export function gate(root = document) {
  for (const node of root.querySelectorAll("[data-can]")) {
    const ability = (page.can || {})[node.dataset.can];
    if (!ability || ability.allowed) continue;
    if (node.tagName === "FORM" || node.tagName === "FIELDSET") {
      for (const field of node.querySelectorAll("input, select, textarea, button")) gateOne(field, node.dataset.can);
      node.prepend(el("p", { class: "muted" }, ability.reason));
    } else gateOne(node, node.dataset.can);
  }
}

export function can(key) {
  const ability = (page.can || {})[key];
  return !ability || ability.allowed;
}

/** A paginated API list rendered into a table body: rows from `row(item)`, an empty state,
 * and previous/next buttons from the API's links. Returns a reload function. */
export function listTable({ table, url, row, empty = "Nothing here yet.", onPage }) {
  const body = table.tBodies[0] || table.appendChild(el("tbody"));
  const pager = el("div", { class: "pager" });
  const note = el("p", { class: "empty", hidden: true }, empty);
  (table.closest(".table-wrap") || table).after(note, pager);
  let current = typeof url === "function" ? url() : url;
  async function load(target = current) {
    current = target;
    let data;
    try {
      data = await api(target);
    } catch (error) {
      body.replaceChildren();
      note.hidden = false;
      note.textContent = error.message;
      note.className = "error";
      return;
    }
    const items = Array.isArray(data) ? data : data.results;
    body.replaceChildren(...items.map(row).filter(Boolean));
    gate(body);  // rows made here may hold controls the viewer's role cannot use
    note.hidden = items.length > 0;
    note.className = "empty";
    note.textContent = empty;
    pager.replaceChildren();
    if (!Array.isArray(data) && (data.previous || data.next)) {
      const back = el("button", { type: "button", disabled: !data.previous }, "Previous");
      const forward = el("button", { type: "button", disabled: !data.next }, "Next");
      back.addEventListener("click", () => load(relative(data.previous)));
      forward.addEventListener("click", () => load(relative(data.next)));
      pager.append(back, forward);
      if (data.count !== undefined) pager.append(el("span", { class: "muted" }, `${fmt.number(data.count)} in all`));
    }
    if (onPage) onPage(data);
  }
  load();
  return (target) => load(target === undefined ? (typeof url === "function" ? url() : current) : target);
}

function relative(link) {
  const parsed = new URL(link, location.origin);
  return parsed.pathname + parsed.search;
}

/** Asks the viewer to type `name` to confirm a destructive action. */
export function confirmTyped(what, name) {
  return new Promise((resolve) => {
    const input = el("input", { id: "confirm-name", autocomplete: "off", spellcheck: "false" });
    const go = el("button", { type: "submit", class: "danger", disabled: true }, "Delete");
    const form = el("form", { method: "dialog" },
      el("h2", {}, `Delete ${what}?`),
      el("p", {}, "This cannot be undone. Type ", el("strong", {}, name), " to confirm."),
      el("label", { for: "confirm-name" }, "Name"), input,
      el("div", { class: "actions" }, go, el("button", { type: "button", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel")));
    const dialog = el("dialog", { "aria-label": `Delete ${what}` }, form);
    input.addEventListener("input", () => { go.disabled = input.value !== name; });
    form.addEventListener("submit", (e) => { e.preventDefault(); dialog.close(input.value === name ? "yes" : "cancel"); });
    dialog.addEventListener("close", () => { resolve(dialog.returnValue === "yes"); dialog.remove(); });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

/** A value shown once (a token, a secret): with a copy button and a warning. */
export function shownOnce(label, value) {
  const code = el("code", { class: "copy" }, value);
  const copy = el("button", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(value); copy.textContent = "Copied"; }
    catch { getSelection().selectAllChildren(code); copy.textContent = "Selected: press Ctrl+C"; }
  });
  return el("div", { class: "secret-once", role: "alert" },
    el("p", {}, el("strong", {}, label), " — shown only now; copy it somewhere safe."), code, " ", copy);
}

export function copyable(value) {
  const code = el("code", { class: "copy" }, value);
  const copy = el("button", { type: "button", "aria-label": "Copy " + value }, "Copy");
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(value); copy.textContent = "Copied"; }
    catch { getSelection().selectAllChildren(code); }
  });
  return el("span", {}, code, " ", copy);
}

export function badge(text) {
  return el("span", { class: "badge " + String(text || "").replace(/[^a-z_-]/gi, "") }, text || "—");
}

/** Repeats `work` every `ms` while the page is visible (a live view without a held
 * connection); stops when `work` returns false. */
export function poll(work, ms = 2000) {
  let timer = null;
  let stopped = false;
  async function tick() {
    if (stopped) return;
    if (document.hidden) { timer = setTimeout(tick, ms); return; }
    let more = true;
    try { more = (await work()) !== false; } catch { more = true; }
    if (more && !stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

gate();
