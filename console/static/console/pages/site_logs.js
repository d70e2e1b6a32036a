// The serving container's output: the last lines, then newer ones every 2 s while "Follow"
// is on (each poll is a short request with the previous cursor; nothing stays open).
import { api, fmt, poll, say } from "../console.js";
import { siteApi } from "../site_header.js";

const log = document.getElementById("runtime-log");
const status = document.getElementById("logs-status");
const follow = document.getElementById("follow");
const stamps = document.getElementById("stamps");
const tail = document.getElementById("tail");
let cursor = 0;
let stop = null;
let lines = [];

function render() {
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = lines.map((l) => (stamps.checked ? `${fmt.clock(l.at)}  ` : "") + l.text).join("\n");
  if (atBottom) log.scrollTop = log.scrollHeight;
}

async function fetchLines() {
  const data = await api(`${siteApi}logs/?tail=${tail.value}&after=${cursor}`);
  document.getElementById("logs-container").textContent = data.container ? `(${data.container})` : "";
  if (!data.container) say(status, "Nothing is serving this site now: start or deploy it to see its output.");
  else say(status, follow.checked ? "Following: new lines appear every 2 s." : "");
  if (data.lines.length) {
    lines = lines.concat(data.lines).slice(-Number(tail.value) * 2);
    render();
  }
  cursor = data.cursor;
}

function start() {
  if (stop) stop();
  stop = poll(async () => {
    try { await fetchLines(); } catch (error) { say(status, error.message, "error"); }
    return follow.checked;
  }, 2000);
}
tail.addEventListener("change", () => { cursor = 0; lines = []; start(); });
follow.addEventListener("change", start);
stamps.addEventListener("change", render);
start();
