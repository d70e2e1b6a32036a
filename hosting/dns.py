"""The real TXT resolver used for domain verification (tests inject their own)."""

from __future__ import annotations

import dns.exception
import dns.resolver


def resolve_txt(name: str) -> list[str]:
    try:
        answer = dns.resolver.resolve(name, "TXT", lifetime=5.0)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise LookupError(f"{exc.__class__.__name__}: {exc}") from exc
    return [b"".join(rdata.strings).decode(errors="replace") for rdata in answer]
