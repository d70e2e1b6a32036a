"""Cloudflare's edge address ranges: the peers whose CF-Connecting-IP is believed.

From CLOUDFLARE_IP_RANGES (comma-separated CIDRs) or CLOUDFLARE_IP_RANGES_FILE (one per
line, # comments), else the list Cloudflare publishes (https://www.cloudflare.com/ips/,
as of 2026-12).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PUBLISHED = (
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
)


def ranges() -> list[str]:
    """The ranges, each checked as a network (a typo must not reach the proxy's config)."""
    if settings.CLOUDFLARE_IP_RANGES:
        raw = list(settings.CLOUDFLARE_IP_RANGES)
    elif settings.CLOUDFLARE_IP_RANGES_FILE:
        text = Path(settings.CLOUDFLARE_IP_RANGES_FILE).read_text()
        raw = [line.split("#")[0].strip() for line in text.splitlines()]
    else:
        raw = list(PUBLISHED)
    networks = []
    for value in filter(None, (r.strip() for r in raw)):
        try:
            networks.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError as exc:
            raise ImproperlyConfigured(f"Cloudflare range {value!r} is not a network.") from exc
    return networks
