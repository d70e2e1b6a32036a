// A shell in the site's container: the API hands out a single-use ticket, the WebSocket
// takes it as its first frame; keystrokes go out as input frames, output comes back as bytes.
import { api, say } from "../console.js";
import { siteApi } from "../site_header.js";
import { FitAddon } from "../vendor/addon-fit-0.11.0/addon-fit.mjs";
import { Terminal } from "../vendor/xterm-6.0.0/xterm.mjs";

const openButton = document.getElementById("terminal-open");
const closeButton = document.getElementById("terminal-close");
const status = document.getElementById("terminal-status");
const mount = document.getElementById("terminal");
let term = null;
let socket = null;
const fit = new FitAddon();

function finish(message, kind) {
  openButton.disabled = false;
  closeButton.disabled = true;
  say(status, message, kind);
  socket = null;
}

async function openShell() {
  openButton.disabled = true;
  say(status, "Asking for a ticket…");
  let ticket;
  try {
    ticket = await api(`${siteApi}terminal/`, { method: "POST" });
  } catch (error) {
    finish(error.message, "error");
    return;
  }
  document.getElementById("terminal-container").textContent = `(${ticket.container})`;
  if (!term) {
    term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 14, scrollback: 5000 });
    term.loadAddon(fit);
    term.open(mount);
    term.onData((data) => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "input", data })); });
    term.onResize(({ cols, rows }) => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "resize", cols, rows })); });
    new ResizeObserver(() => fit.fit()).observe(mount);
  }
  term.reset();
  fit.fit();
  socket = new WebSocket(ticket.url);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ ticket: ticket.ticket, cols: term.cols, rows: term.rows }));
    closeButton.disabled = false;
    say(status, "Connected.", "ok");
    term.focus();
  });
  socket.addEventListener("message", (event) => {
    term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
  });
  socket.addEventListener("close", (event) => {
    const why = event.reason || (event.code === 1006 ? "the connection was refused or lost" : `closed (${event.code})`);
    finish(`Session ended: ${why}.`, event.code === 1000 ? "ok" : "error");
  });
}

openButton.addEventListener("click", openShell);
closeButton.addEventListener("click", () => { if (socket) socket.close(1000, "closed by you"); });
