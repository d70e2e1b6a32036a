"""Host discovery: providers report Docker hosts; they wait as candidates (DiscoveredHost)
until staff approve one. Approval never trusts by itself: a tcp:// endpoint is enrolled with
the panel's CA (pending until its code is confirmed, hosting/enrolment.py), an ssh:// one is
added as a host; anything else cannot be approved.

Providers (HOST_DISCOVERY_PROVIDERS):
- `static`: a JSON file (HOST_DISCOVERY_FILE) listing {"name", "endpoint", "address"}.
- `cloudflare`: the Zero Trust (WARP) device list of an account, as seed 000's Dockerflare
  reads it (`GET /accounts/{account_id}/devices`, paged), each device's IP with
  CLOUDFLARE_DEVICE_ENDPOINT (default tcp://{ip}:2376).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import enrolment
from hosting.models import DiscoveredHost, DockerHost

ENDPOINT_RE = re.compile(r"^(unix:///\S+|tcp://\S+|ssh://\S+)$")
CLOUDFLARE_PAGE_SIZE = 100
CLOUDFLARE_MAX_PAGES = 50


class DiscoveryError(Exception):
    """A provider that could not be read; the message says why."""


@dataclass(frozen=True)
class Candidate:
    source: str
    external_id: str
    name: str
    endpoint: str
    address: str | None


class Provider(Protocol):
    name: str

    def candidates(self) -> list[Candidate]: ...


class StaticProvider:
    name = "static"

    def __init__(self, path: str):
        self.path = Path(path)

    def candidates(self) -> list[Candidate]:
        try:
            rows = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise DiscoveryError(f"{self.path}: {exc}") from None
        if not isinstance(rows, list):
            raise DiscoveryError(f"{self.path}: a JSON list of hosts is expected")
        found = []
        for row in rows:
            if not isinstance(row, dict) or not row.get("name") or not row.get("endpoint"):
                raise DiscoveryError(f"{self.path}: each host needs a name and an endpoint")
            found.append(
                Candidate(self.name, str(row["name"]), slugify(str(row["name"]))[:50],
                          str(row["endpoint"]), row.get("address"))
            )  # fmt: skip
        return found


class CloudflareDevicesProvider:
    name = "cloudflare"

    def __init__(self, account_id: str, api_token: str, base_url: str, endpoint: str):
        self.account_id, self.api_token = account_id, api_token
        self.base_url, self.endpoint = base_url.rstrip("/"), endpoint

    def _page(self, page: int) -> dict:
        url = f"{self.base_url}/accounts/{self.account_id}/devices"
        try:
            response = requests.get(
                url,
                params={"page": page, "per_page": CLOUDFLARE_PAGE_SIZE},
                headers={"Authorization": f"Bearer {self.api_token}"},
                timeout=10,
            )
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise DiscoveryError(f"Cloudflare device list: {exc}") from None
        if response.status_code != 200 or not body.get("success"):
            errors = "; ".join(e.get("message", "") for e in body.get("errors") or [])
            raise DiscoveryError(
                f"Cloudflare device list: HTTP {response.status_code} {errors}".strip()
            )
        return body

    def candidates(self) -> list[Candidate]:
        found, page = [], 1
        while page <= CLOUDFLARE_MAX_PAGES:
            body = self._page(page)
            for device in body.get("result") or []:
                ip = device.get("ip")
                if not ip or not device.get("id"):
                    continue
                name = slugify(device.get("name") or device["id"])[:50] or device["id"][:50]
                found.append(Candidate(self.name, str(device["id"]), name,
                                       self.endpoint.format(ip=ip), ip))  # fmt: skip
            info = body.get("result_info") or {}
            if page >= int(info.get("total_pages") or 1):
                break
            page += 1
        return found


def configured() -> list[Provider]:
    chosen: list[Provider] = []
    for name in settings.HOST_DISCOVERY_PROVIDERS:
        if name == "static":
            chosen.append(StaticProvider(settings.HOST_DISCOVERY_FILE))
        elif name == "cloudflare":
            chosen.append(
                CloudflareDevicesProvider(
                    settings.CLOUDFLARE_ACCOUNT_ID, settings.CLOUDFLARE_API_TOKEN,
                    settings.CLOUDFLARE_API_URL, settings.CLOUDFLARE_DEVICE_ENDPOINT,
                )
            )  # fmt: skip
        else:
            raise DiscoveryError(f"unknown discovery provider {name!r}")
    return chosen


def discover(providers: list[Provider] | None = None) -> dict[str, int]:
    """Ask every provider; new candidates are recorded (audited), known ones marked seen.
    A provider that fails leaves its candidates as they were."""
    counts = {"new": 0, "seen": 0}
    for provider in configured() if providers is None else providers:
        for candidate in provider.candidates():
            with transaction.atomic():
                row, made = DiscoveredHost.objects.select_for_update().get_or_create(
                    source=candidate.source,
                    external_id=candidate.external_id,
                    defaults={"name": candidate.name, "endpoint": candidate.endpoint,
                              "address": candidate.address},
                )  # fmt: skip
                if made:
                    counts["new"] += 1
                    record(actions.HOST_DISCOVER, target=row,
                           changes={"endpoint": row.endpoint, "source": row.source})  # fmt: skip
                else:
                    counts["seen"] += 1
                    DiscoveredHost.objects.filter(pk=row.pk).update(
                        last_seen_at=timezone.now(), endpoint=candidate.endpoint,
                        address=candidate.address,
                    )  # fmt: skip
    return counts


def approve(row: DiscoveredHost, *, actor: User | None, bundle_dir: Path | None = None):
    """Approve a candidate: tcp:// is enrolled (returns the host and the code to compare),
    ssh:// is added pending its host key's trust (code None). Anything else is refused."""
    if row.approved_at is not None:
        raise ValidationError({"detail": f"{row.name} was approved already."})
    if DockerHost.objects.filter(name=row.name).exists():
        raise ValidationError({"name": f"A host named {row.name} exists."})
    code = None
    if row.endpoint.startswith("tcp://"):
        if bundle_dir is None:
            raise ValidationError({"bundle": "A tcp:// host needs a directory for its files."})
        extra = {"address": row.address} if row.address else {}
        host, code = enrolment.enrol(actor=actor, name=row.name, endpoint=row.endpoint,
                                     bundle_dir=bundle_dir, **extra)  # fmt: skip
    elif row.endpoint.startswith("ssh://") and ENDPOINT_RE.match(row.endpoint):
        extra = {"address": row.address} if row.address else {}
        host = enrolment.add_ssh(actor=actor, name=row.name, endpoint=row.endpoint, **extra)
    else:
        raise ValidationError(
            {"endpoint": "Only tcp:// (enrolled with TLS) or ssh:// hosts can be approved."}
        )
    with transaction.atomic():
        DiscoveredHost.objects.filter(pk=row.pk).update(host=host, approved_at=timezone.now())
        record(actions.HOST_APPROVE, actor=actor, target=host,
               changes={"source": row.source, "external_id": row.external_id})  # fmt: skip
    return host, code
