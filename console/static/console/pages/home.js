import { bindForm, el, listTable } from "../console.js";

listTable({
  table: document.getElementById("orgs"),
  url: "organizations/?ordering=name",
  empty: "You are in no organization yet: create one below, or accept an invitation from its link.",
  row: (org) => el("tr", {},
    el("td", {}, el("a", { href: `/o/${encodeURIComponent(org.slug)}/` }, org.name), org.is_personal ? el("small", {}, " (personal)") : null),
    el("td", {}, org.slug), el("td", {}, org.role)),
});
bindForm(document.getElementById("new-org"), {
  url: "organizations/",
  done: (org) => { location.href = `/o/${encodeURIComponent(org.slug)}/`; return "Created."; },
});
