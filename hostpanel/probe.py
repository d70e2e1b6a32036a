"""The one outbound HTTP probe: health checks and the deployment health wait. One address
policy (loopback only, unless settings.HEALTH_ALLOW_ANY_ADDRESS), one GET, no redirects
followed (a 3xx is a pass: the app answered)."""

from __future__ import annotations

import http.client
import ipaddress
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

REFUSED = "refused: non-loopback address"


@dataclass(frozen=True)
class Result:
    timestamp: datetime
    ok: bool
    status_code: int | None = None
    response_time_ms: float | None = None
    error: str = ""


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def address_allowed(address: str) -> bool:
    return settings.HEALTH_ALLOW_ANY_ADDRESS or is_loopback(address)


def http_get(address: str, port: int, path: str, timeout: float) -> Result:
    """GET http://address:port/path once; redirects are not followed (3xx is a pass)."""
    started_at = timezone.now()
    if not address_allowed(address):
        return Result(started_at, ok=False, error=REFUSED)
    if not path.startswith("/"):
        path = "/" + path
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    start = time.perf_counter()
    try:
        conn.request("GET", path, headers={"User-Agent": "hostpanel-health/1", "Accept": "*/*"})
        response = conn.getresponse()
        elapsed_ms = (time.perf_counter() - start) * 1000
        status = response.status
    except Exception as exc:  # any failure to get a status line is a failed check
        elapsed_ms = (time.perf_counter() - start) * 1000
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Result(started_at, ok=False, response_time_ms=elapsed_ms, error=error[:255])
    finally:
        conn.close()
    return Result(
        started_at,
        ok=status < 400,
        status_code=status,
        response_time_ms=elapsed_ms,
        error="" if status < 400 else f"HTTP {status}",
    )
