import { api, bindForm, el, formData, page } from "../console.js";

const org = encodeURIComponent(page.org.slug);
const form = document.getElementById("new-site");
const type = document.getElementById("s-type");
function showFields() {
  const kind = type.value;
  document.getElementById("image-field").hidden = kind !== "docker";
  document.getElementById("repo-fields").hidden = kind === "docker";
  document.getElementById("command-fields").hidden = kind !== "dynamic";
}
type.addEventListener("change", showFields);
showFields();

api("site-templates/?page_size=200").then((data) => {
  document.getElementById("s-template").append(...data.results.map((t) => el("option", { value: t.slug }, t.name)));
}).catch(() => {});

bindForm(form, {
  url: `organizations/${org}/sites/`,
  data: (f) => {
    const data = formData(f);
    for (const name of Object.keys(data)) {  // what the chosen type does not use stays out
      const field = f.elements.namedItem(name);
      if (field && field.closest("[hidden]")) delete data[name];
      if (data[name] === null) delete data[name];
    }
    return data;
  },
  done: (site) => { location.href = `/o/${org}/sites/${encodeURIComponent(site.slug)}/`; return "Created."; },
});
