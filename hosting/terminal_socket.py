"""The terminal's WebSocket (an ASGI app, hostpanel/asgi.py routes /ws/terminal/ here).

Protocol: the page opens the socket (its Origin must be the panel's), sends one text frame
`{"ticket": "...", "cols": 80, "rows": 24}` within TICKET_WAIT_SECONDS, then keystrokes as
`{"type": "input", "data": "..."}` (or binary frames) and `{"type": "resize", ...}`; the
shell's output comes back as binary frames. The ticket is spent by the socket's own
signed-in user (the session cookie), once; a refusal closes the socket with a 44xx code and
the reason. The session ends when the shell exits, the page goes, nothing passed either way
for TERMINAL_IDLE_SECONDS, or a recheck (every TERMINAL_RECHECK_SECONDS) finds its user
signed out, no longer allowed, or the container replaced (4403); its end, bytes and duration
are audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db import close_old_connections
from django.http import HttpRequest

from hosting import docker as engine
from hosting import terminals

log = logging.getLogger(__name__)
TICKET_WAIT_SECONDS = 10
READ_SIZE = 65536


def allowed_origins() -> set[str]:
    def origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    return {
        origin(u)
        for u in [
            settings.SITE_URL,
            *settings.CSRF_TRUSTED_ORIGINS,
            *settings.TERMINAL_ALLOWED_ORIGINS,
        ]
    }


def header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def session_user_id(cookie_header: str):
    """The signed-in user of the session cookie (Django's own checks: expiry, the session
    hash that a password change or "sign out everywhere" changes), or None."""
    close_old_connections()
    cookies = SimpleCookie()
    with contextlib.suppress(Exception):
        cookies.load(cookie_header)
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(morsel.value)
    user = get_user(request)
    return user.pk if user.is_authenticated and user.is_active else None


def spend(raw: str, user_id) -> terminals.TerminalTicket:
    close_old_connections()
    return terminals.spend_ticket(raw, user_id=user_id)


def still_allowed(ticket, cookie_header: str) -> str:
    """'' while the socket's session is its user's and they may still open terminals."""
    if session_user_id(cookie_header) != ticket.user_id:
        return "You were signed out."
    return terminals.still_allowed(ticket)


def record_end(ticket, end: terminals.SessionEnd) -> None:
    close_old_connections()
    terminals.record_end(ticket, end)


def size_of(message: dict[str, Any]) -> tuple[int, int]:
    def bounded(value: Any, default: int) -> int:
        return max(2, min(int(value), 1000)) if isinstance(value, int) else default

    return bounded(message.get("cols"), 80), bounded(message.get("rows"), 24)


async def terminal(scope: dict[str, Any], receive, send) -> None:
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    if header(scope, b"origin").lower() not in allowed_origins():
        await send({"type": "websocket.close", "code": 4403})  # before accept: HTTP 403
        return
    await send({"type": "websocket.accept"})

    async def close(code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    try:
        first = await asyncio.wait_for(receive(), TICKET_WAIT_SECONDS)
    except TimeoutError:
        await close(4408, "No ticket was sent.")
        return
    if first["type"] != "websocket.receive":
        return
    try:
        hello = json.loads(first.get("text") or "")
        raw = str(hello["ticket"])
    except (ValueError, KeyError, TypeError):
        await close(4400, 'Send {"ticket": "..."} first.')
        return
    user_id = await sync_to_async(session_user_id)(header(scope, b"cookie"))
    try:
        ticket = await sync_to_async(spend)(raw, user_id)
    except terminals.TicketRefused as refused:
        await close(refused.code, refused.reason)
        return
    cols, rows = size_of(hello)
    loop = asyncio.get_running_loop()
    try:
        exec_id, shell = await loop.run_in_executor(
            None, lambda: engine.open_shell(ticket.host, ticket.docker_id, cols=cols, rows=rows)
        )
    except (*engine.TRANSIENT_ERRORS, engine.SpecRejected) as exc:
        await close(4503, f"The engine did not open a shell: {exc}")
        await sync_to_async(record_end)(ticket, terminals.SessionEnd(0, 0, 0.0, "no shell"))
        return
    session = Session(ticket, exec_id, shell, send, loop)
    cookies = header(scope, b"cookie")

    async def recheck() -> str:
        return await sync_to_async(still_allowed)(ticket, cookies)

    reason = await session.run(receive, recheck)
    await close(session.close_code, reason)
    await sync_to_async(record_end)(ticket, session.end(reason))


class Session:
    """One shell bridged to one socket: output pumped by a thread, input written as it comes."""

    def __init__(self, ticket, exec_id: str, shell: socket.socket, send, loop) -> None:
        self.ticket = ticket
        self.exec_id = exec_id
        self.shell = shell
        self.send = send
        self.loop = loop
        self.bytes_in = self.bytes_out = 0
        self.close_code = 1000
        self.started = self.last_activity = time.monotonic()

    def pump_output(self) -> None:
        """Runs in a thread until the shell's side closes."""
        while True:
            try:
                data = self.shell.recv(READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self.bytes_out += len(data)
            self.last_activity = time.monotonic()
            future = asyncio.run_coroutine_threadsafe(
                self.send({"type": "websocket.send", "bytes": data}), self.loop
            )
            try:
                future.result(timeout=30)
            except Exception:  # the page went: the main loop ends the session
                return

    async def run(self, receive, recheck) -> str:
        """Bridge until the shell exits, the page goes, nothing passes for the idle time, or
        a recheck (every TERMINAL_RECHECK_SECONDS) finds the user may no longer be here."""
        output = self.loop.run_in_executor(None, self.pump_output)
        idle = settings.TERMINAL_IDLE_SECONDS
        every = settings.TERMINAL_RECHECK_SECONDS
        next_check = time.monotonic() + every
        incoming = None
        try:
            while True:
                if incoming is None:
                    incoming = asyncio.ensure_future(receive())
                now = time.monotonic()
                wait = min(idle - (now - self.last_activity), next_check - now)
                done, _ = await asyncio.wait(
                    {incoming, output}, timeout=max(wait, 0), return_when=asyncio.FIRST_COMPLETED
                )
                if output in done:
                    return "the shell exited"
                if incoming in done:
                    event, incoming = incoming.result(), None
                    if event["type"] == "websocket.disconnect":
                        return "the page closed"
                    await self.handle(event)
                now = time.monotonic()
                if now - self.last_activity >= idle:
                    return f"idle for {idle} s"
                if now >= next_check:
                    next_check = now + every
                    problem = await recheck()
                    if problem:
                        self.close_code = 4403
                        return problem
        finally:
            if incoming is not None:
                incoming.cancel()
            with contextlib.suppress(OSError):
                self.shell.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.shell.close()

    async def handle(self, event: dict[str, Any]) -> None:
        data: bytes | None = event.get("bytes")
        if data is None and event.get("text"):
            try:
                message = json.loads(event["text"])
            except ValueError:
                return
            if not isinstance(message, dict):
                return
            if message.get("type") == "resize":
                cols, rows = size_of(message)
                try:
                    await self.loop.run_in_executor(
                        None,
                        lambda: engine.resize_shell(
                            self.ticket.host, self.exec_id, cols=cols, rows=rows
                        ),
                    )
                except (*engine.TRANSIENT_ERRORS, engine.SpecRejected) as exc:
                    log.warning("terminal: resize refused: %s", exc)
                return
            if message.get("type") == "input" and isinstance(message.get("data"), str):
                data = message["data"].encode()
        if not data:
            return
        self.bytes_in += len(data)
        self.last_activity = time.monotonic()
        await self.loop.run_in_executor(None, self.shell.sendall, data)

    def end(self, reason: str) -> terminals.SessionEnd:
        return terminals.SessionEnd(
            self.bytes_in, self.bytes_out, time.monotonic() - self.started, reason
        )
