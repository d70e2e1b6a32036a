// The organization switcher in the header: the viewer's organizations, from the API.
import { api, el } from "./console.js";

const select = document.getElementById("org-switch");
if (select) {
  api("organizations/?page_size=200&ordering=name").then((data) => {
    const current = select.dataset.current;
    select.replaceChildren(...(current ? [] : [el("option", { value: "" }, "Choose…")]),
      ...data.results.map((org) => el("option", { value: org.slug, selected: org.slug === current }, org.name)));
  }).catch(() => {});
  select.addEventListener("change", () => { if (select.value) location.href = `/o/${encodeURIComponent(select.value)}/`; });
}
