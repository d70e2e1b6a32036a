"""The web terminal for real: uvicorn serving hostpanel.asgi in this process, a real engine,
a WebSocket client. A command typed through the socket returns its output; a reused or
foreign ticket, a wrong Origin, a viewer and an organization with terminals off are refused."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from urllib.parse import urlsplit

import pytest
import uvicorn
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from accounts import services as accounts
from audit.models import AuditLog
from hosting import services
from hosting.reconcile import converge_now
from tests.conftest import client_for
from tests.docker_engines import TEST_IMAGE, free_port
from tests.factories import add_member, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ORIGIN = settings.SITE_URL


@pytest.fixture
def terminal_server(settings):
    """uvicorn with the project's ASGI app on a free loopback port; its WebSocket URL."""
    with serve_terminal(settings, "127.0.0.1") as url:
        yield url


@contextlib.contextmanager
def serve_terminal(settings, hostname: str):
    from hostpanel.asgi import application

    port = free_port()
    config = uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    settings.TERMINAL_URL = f"ws://{hostname}:{port}/ws/terminal/"
    try:
        yield settings.TERMINAL_URL
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def running_site(org, owner, docker_host):
    port = free_port()
    site = services.create_site(
        org,
        actor=owner,
        name="Shell",
        image=TEST_IMAGE,
        start_command=f"httpd -f -p 127.0.0.1:{port} -h /www",
        internal_port=port,
        limits={"memory_mb": 64, "cpu_percent": 50},
    )
    site = converge_now(site)
    assert site.observed_state == "running"
    return site


def session_cookie(user) -> str:
    browser = Client()
    browser.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"


def ticket_for(user, site) -> dict:
    url = f"/api/v1/organizations/{site.organization.slug}/sites/{site.slug}/terminal/"
    response = client_for(user).post(url)
    assert response.status_code == 201, response.content
    return response.json()


def open_socket(url: str, user, *, origin: str = ORIGIN):
    return connect(
        url,
        origin=origin,
        additional_headers={"Cookie": session_cookie(user)},
        open_timeout=5,
        close_timeout=2,
    )


def read_until(ws, needle: bytes, timeout: float = 10.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r} in {seen[-500:]!r}"
        try:
            frame = ws.recv(timeout=left)
        except TimeoutError:
            raise AssertionError(f"never saw {needle!r} in {seen[-500:]!r}") from None
        seen += frame if isinstance(frame, bytes) else frame.encode()
    return seen


def close_code(ws, timeout: float = 5.0) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_a_command_typed_through_the_socket_returns_its_output(
    terminal_server, running_site, owner
):
    ticket = ticket_for(owner, running_site)
    assert ticket["url"] == terminal_server
    with open_socket(ticket["url"], owner) as ws:
        ws.send(json.dumps({"ticket": ticket["ticket"], "cols": 100, "rows": 30}))
        ws.send(json.dumps({"type": "input", "data": "echo hello-$((6*7))\n"}))
        assert b"hello-42" in read_until(ws, b"hello-42")
        ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        ws.send(json.dumps({"type": "input", "data": "busybox stty size\n"}))
        read_until(ws, b"40 120")
        ws.send(json.dumps({"type": "input", "data": "exit\n"}))
        assert close_code(ws) == (1000, "the shell exited")

    opened = AuditLog.objects.get(action="terminal.open")
    assert opened.actor == owner and opened.target_id == str(running_site.pk)
    closed = wait_for_audit("terminal.close")
    assert closed.changes["bytes_in"] == len("echo hello-$((6*7))\nbusybox stty size\nexit\n")
    assert closed.changes["bytes_out"] > len("hello-42")
    assert closed.changes["reason"] == "the shell exited"
    assert ticket["ticket"] not in json.dumps(list(AuditLog.objects.values("changes")))


def wait_for_audit(action: str, timeout: float = 5.0) -> AuditLog:
    deadline = time.monotonic() + timeout
    while not AuditLog.objects.filter(action=action).exists():
        assert time.monotonic() < deadline, f"no {action} entry"
        time.sleep(0.05)
    return AuditLog.objects.get(action=action)


def test_a_used_ticket_a_foreign_ticket_and_a_wrong_origin_are_refused(
    terminal_server, running_site, owner, org
):
    ticket = ticket_for(owner, running_site)
    with open_socket(ticket["url"], owner) as ws:
        ws.send(json.dumps({"ticket": ticket["ticket"]}))
        ws.send(json.dumps({"type": "input", "data": "echo first\n"}))
        read_until(ws, b"first")
    with open_socket(ticket["url"], owner) as ws:  # the same ticket again
        ws.send(json.dumps({"ticket": ticket["ticket"]}))
        assert close_code(ws) == (4404, "This ticket is unknown, used or expired.")

    admin = make_user()
    add_member(org, admin, "admin")
    stolen = ticket_for(owner, running_site)
    with open_socket(stolen["url"], admin) as ws:  # another member's socket
        ws.send(json.dumps({"ticket": stolen["ticket"]}))
        assert close_code(ws) == (4403, "This ticket belongs to someone else.")
    with open_socket(stolen["url"], owner) as ws:  # and it is burnt for its owner too
        ws.send(json.dumps({"ticket": stolen["ticket"]}))
        assert close_code(ws)[0] == 4404

    fresh = ticket_for(owner, running_site)
    with pytest.raises(InvalidStatus) as refused:
        open_socket(fresh["url"], owner, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    with open_socket(fresh["url"], owner) as ws:  # not spent by the refused handshake
        ws.send(json.dumps({"ticket": fresh["ticket"]}))
        ws.send(json.dumps({"type": "input", "data": "echo still-good\n"}))
        read_until(ws, b"still-good")
    # no session cookie: nobody is signed in
    with connect(fresh["url"], origin=ORIGIN, open_timeout=5) as ws:
        ws.send(json.dumps({"ticket": ticket_for(owner, running_site)["ticket"]}))
        assert close_code(ws) == (4401, "Sign in to the panel first.")


def test_roles_and_the_organizations_switch(terminal_server, running_site, owner, org):
    viewer, member, admin = make_user(), make_user(), make_user()
    add_member(org, viewer, "viewer")
    add_member(org, member, "member")
    add_member(org, admin, "admin")
    url = f"/api/v1/organizations/{org.slug}/sites/{running_site.slug}/terminal/"
    assert client_for(viewer).post(url).status_code == 403
    refused = client_for(member).post(url)
    assert refused.status_code == 403
    assert "need the admin role" in refused.json()["detail"]
    admins_ticket = ticket_for(admin, running_site)

    response = client_for(admin).patch(
        f"/api/v1/organizations/{org.slug}/", {"terminal_access": "off"}, format="json"
    )
    assert response.status_code == 403  # owners decide
    accounts.update_organization(org, actor=owner, terminal_access="off")
    off = client_for(owner).post(url)
    assert off.status_code == 403 and "turned off" in off.json()["detail"]
    with open_socket(admins_ticket["url"], admin) as ws:  # issued before: refused now
        ws.send(json.dumps({"ticket": admins_ticket["ticket"]}))
        assert close_code(ws) == (4403, f"Terminals are turned off in {org.slug}.")

    accounts.update_organization(org, actor=owner, terminal_access="members")
    assert client_for(member).post(url).status_code == 201
    assert client_for(viewer).post(url).status_code == 403


def test_an_idle_session_is_closed_and_audited(terminal_server, running_site, owner, settings):
    settings.TERMINAL_IDLE_SECONDS = 1
    ticket = ticket_for(owner, running_site)
    with open_socket(ticket["url"], owner) as ws:
        ws.send(json.dumps({"ticket": ticket["ticket"]}))
        started = time.monotonic()
        assert close_code(ws) == (1000, "idle for 1 s")
        assert time.monotonic() - started < 5
    assert wait_for_audit("terminal.close").changes["reason"] == "idle for 1 s"


@pytest.mark.browser
def test_the_site_page_opens_a_shell_and_runs_a_command(
    browse, live_server, settings, running_site, owner
):
    # The page's own host name, so the browser sends its session cookie with the socket.
    with serve_terminal(settings, urlsplit(live_server.url).hostname):
        page = browse(owner).page
        page.goto(f"/o/{running_site.organization.slug}/sites/{running_site.slug}/terminal/")
        page.get_by_role("button", name="Open a shell").click()
        expect(page.locator("#terminal-status")).to_have_text("Connected.")
        page.locator("#terminal").click()
        page.keyboard.type("echo from-the-page-$((6*7))\n")
        expect(page.locator("#terminal .xterm-rows")).to_contain_text("from-the-page-42")
        page.get_by_role("button", name="Close").click()
        expect(page.locator("#terminal-status")).to_contain_text("Session ended")
    assert wait_for_audit("terminal.close").changes["bytes_in"] > 0


def test_an_open_terminal_closes_when_its_user_loses_the_right_or_signs_out(
    terminal_server, running_site, owner, org, settings
):
    settings.TERMINAL_RECHECK_SECONDS = 1
    admin = make_user()
    membership = add_member(org, admin, "admin")
    ticket = ticket_for(admin, running_site)
    with open_socket(ticket["url"], admin) as ws:
        ws.send(json.dumps({"ticket": ticket["ticket"]}))
        ws.send(json.dumps({"type": "input", "data": "echo open\n"}))
        read_until(ws, b"open")
        accounts.change_role(membership, "member", actor=owner)
        assert close_code(ws) == (4403, "Terminals here need the admin role; you are member.")
    ended = wait_for_audit("terminal.close")
    assert ended.changes["reason"] == "Terminals here need the admin role; you are member."

    ticket = ticket_for(owner, running_site)
    with open_socket(ticket["url"], owner) as ws:
        ws.send(json.dumps({"ticket": ticket["ticket"]}))
        ws.send(json.dumps({"type": "input", "data": "echo still\n"}))
        read_until(ws, b"still")
        accounts.sign_out_everywhere(owner)  # every session of the owner ends
        assert close_code(ws) == (4403, "You were signed out.")
