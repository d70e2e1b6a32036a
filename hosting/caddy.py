"""Everything that talks to a Caddy admin API (Debian's caddy 2.6.2). `hosting.proxy`
renders the config; this reads and replaces it. Like engine calls, none may be made inside
a database transaction.

Writes are `POST /config/` with `If-Match`: Caddy 2.6.2 ignores If-Match on `/load`, and
two writers (two workers rendering the same host) must not interleave. Caddy sends the
ETag of `GET /config/` as an HTTP trailer, which http.client drops; it is
`"/config/ <FNV-1a 32 of the body>"`, so it is computed from the body here.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from hostpanel.db import in_transaction


class ProxyCallInTransaction(RuntimeError):
    """A proxy call was made inside a database transaction (DESIGN.md, "Control loop")."""


class ProxyUnavailable(Exception):
    """The admin API could not be reached (not running, refused, timed out)."""

    api_status = 503
    api_code = "proxy_unavailable"


class ConfigRejected(Exception):
    """Caddy refused the config; what it serves is unchanged. The message is Caddy's."""


class ConfigConflict(Exception):
    """The config changed between our read and our write (another writer)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def _connection(admin: str) -> http.client.HTTPConnection:
    """`unix:///path/admin.sock`, or `http://127.0.0.1:2019` (loopback only)."""
    timeout = float(settings.PROXY_TIMEOUT_SECONDS)
    if admin.startswith("unix://"):
        return _UnixConnection(admin.removeprefix("unix://"), timeout)
    parts = urlsplit(admin)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ProxyUnavailable(f"Proxy admin endpoint {admin!r} is not a unix socket or loopback.")
    return http.client.HTTPConnection(parts.hostname, parts.port or 2019, timeout=timeout)


def _request(admin: str, method: str, path: str, body: bytes | None = None, headers=None):
    if in_transaction():
        raise ProxyCallInTransaction("Proxy call inside a database transaction; commit first.")
    conn = _connection(admin)
    try:
        conn.request(method, path, body=body, headers={"Host": "localhost", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ProxyUnavailable(f"Proxy admin API {admin} unreachable: {exc}") from exc
    finally:
        conn.close()


def etag(path: str, body: bytes) -> str:
    """Caddy's ETag for the config at `path`: `"<path> <fnv1a32 hex>"`."""
    value = 0x811C9DC5
    for byte in body:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f'"{path} {value:08x}"'


def read_config(admin: str) -> tuple[Any, str]:
    """The running config (None when empty) and its ETag."""
    status, body = _request(admin, "GET", "/config/")
    if status != 200:
        raise ProxyUnavailable(f"Proxy admin API answered {status}: {body[:200]!r}")
    return json.loads(body or b"null"), etag("/config/", body)


def replace_config(admin: str, config: dict[str, Any], if_match: str) -> None:
    status, body = _request(
        admin,
        "POST",
        "/config/",
        json.dumps(config).encode(),
        {"Content-Type": "application/json", "If-Match": if_match},
    )
    if status == 412:
        raise ConfigConflict("The proxy's config changed meanwhile.")
    if status >= 400:
        try:
            message = json.loads(body).get("error") or body.decode(errors="replace")
        except ValueError:
            message = body.decode(errors="replace")
        raise ConfigRejected(message[:2000])
