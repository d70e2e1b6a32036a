"""Container sync (seed 001's background monitor): make Container rows match one engine.

One raw list call to the engine, then a fixed number of queries whatever the container
count: one lookup of the labelled sites, one bulk upsert, one UPDATE for rows no longer
listed, one DELETE of rows unseen for CONTAINER_STALE_SECONDS, one UPDATE per observed state
for the sites, one host UPDATE, and an audit row per drifted site.

The listing is a snapshot taken at `now` (read before the engine is asked): rows and sites
the panel wrote after that moment are newer than the snapshot and are left alone, so a site
started while the engine was listing is neither marked missing nor reported as drift.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import actions
from audit.services import record
from hosting import docker as engine
from hosting.models import (
    Container,
    DesiredState,
    DockerHost,
    HostStatus,
    ObservedState,
    Site,
)
from hostpanel.db import real_sqlite_parameter_limit

UPDATED_FIELDS = [
    "site",
    "name",
    "image",
    "state",
    "status",
    "labels",
    "ports",
    "created",
    "last_seen_at",
]
# Containers one upsert statement carries (14 columns a row: 28,000 parameters, below
# PostgreSQL's 65,535 and SQLite's 32,766 or more since 3.32).
UPSERT_BATCH = 2000


@dataclass
class SyncResult:
    seen: int = 0
    removed: int = 0
    linked: int = 0
    drifted: list[str] = field(default_factory=list)  # ids of sites to bring back


def _site_id(labels: dict[str, str]) -> uuid.UUID | None:
    if labels.get(engine.LABEL_MANAGED) != "true":
        return None
    try:
        return uuid.UUID(labels.get(engine.LABEL_SITE, ""))
    except ValueError:
        return None


def _created(raw: dict[str, Any]) -> datetime | None:
    seconds = raw.get("Created")
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None


def _ports(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: p[k] for k in ("IP", "PrivatePort", "PublicPort", "Type") if k in p}
        for p in raw.get("Ports") or []
    ]


def sync_host(host: DockerHost) -> SyncResult:
    """Reconcile one host. Raises engine.HostUnavailable/HostError without touching rows."""
    now = timezone.now()  # before the listing: anything written after it is newer
    listing = engine.list_containers(host)
    version = engine.engine_version(host)  # an upgraded engine shows up on the next sync
    result = SyncResult(seen=len(listing))

    wanted = {sid for raw in listing if (sid := _site_id(raw.get("Labels") or {}))}
    # Only link a container to a site of the organization its labels claim.
    sites = {
        str(pk): str(org)
        for pk, org in Site.objects.filter(pk__in=wanted).values_list("pk", "organization_id")
    }

    rows, state_by_site = [], {}
    for raw in listing:
        labels = raw.get("Labels") or {}
        site_id = str(_site_id(labels) or "")
        if site_id not in sites or labels.get(engine.LABEL_ORGANIZATION) != sites[site_id]:
            site_id = ""
        names = raw.get("Names") or [raw["Id"][:12]]
        rows.append(
            Container(
                host=host,
                docker_id=raw["Id"],
                site_id=site_id or None,
                name=names[0].lstrip("/")[:255],
                image=(raw.get("Image") or "")[:255],
                state=(raw.get("State") or "")[:20],
                status=(raw.get("Status") or "")[:255],
                labels=labels,
                ports=_ports(raw),
                created=_created(raw),
                last_seen_at=now,
            )
        )
        if site_id:
            result.linked += 1
            # A site's newest container decides its observed state.
            newest = state_by_site.get(site_id)
            if newest is None or (_created(raw) or now) >= newest[1]:
                state_by_site[site_id] = (raw.get("State") or "unknown", _created(raw) or now)

    with transaction.atomic():
        with real_sqlite_parameter_limit():
            Container.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["host", "docker_id"],
                update_fields=UPDATED_FIELDS,
                batch_size=UPSERT_BATCH,
            )
        Container.objects.filter(host=host, last_seen_at__lt=now).exclude(
            state=ObservedState.MISSING
        ).update(state=ObservedState.MISSING, status="Not listed by the engine")
        stale_before = now - timedelta(seconds=settings.CONTAINER_STALE_SECONDS)
        result.removed, _ = Container.objects.filter(
            host=host, last_seen_at__lt=stale_before
        ).delete()

        by_state: dict[str, list[str]] = defaultdict(list)
        for site_id, (state, _) in state_by_site.items():
            known = state if state in ObservedState.values else ObservedState.UNKNOWN
            by_state[known].append(site_id)
        for state, ids in by_state.items():
            # A deleted site keeps "removed" even if a leftover container still carries its
            # labels; a site changed since the snapshot knows better than the snapshot.
            Site.objects.alive().filter(pk__in=ids, updated_at__lt=now).exclude(
                observed_state=state
            ).update(observed_state=state, updated_at=now)

        # Drift: a live site placed here whose container the engine no longer lists. Sites
        # changed after the listing was taken (just created or restarted) are left alone.
        candidates = (
            Site.objects.alive()
            .filter(host=host, updated_at__lt=now)
            .exclude(pk__in=list(state_by_site))
        )
        vanished = list(
            candidates.exclude(observed_state=ObservedState.MISSING)
            .exclude(
                observed_state__in=(ObservedState.UNKNOWN, ObservedState.STOPPED),
                containers__isnull=True,
            )
            .select_related("organization")
        )
        if vanished:
            Site.objects.filter(pk__in=[s.pk for s in vanished]).update(
                observed_state=ObservedState.MISSING, updated_at=now
            )
        for site in vanished:
            record(
                actions.SITE_DRIFT,
                organization=site.organization,
                target=site,
                changes={
                    "observed_state": {"before": site.observed_state, "after": "missing"},
                    "host": host.name,
                },
            )
        result.drifted = [
            str(pk)
            for pk in Site.objects.alive()
            .filter(host=host, desired_state=DesiredState.RUNNING, observed_state="missing")
            .exclude(pk__in=list(state_by_site))
            .values_list("pk", flat=True)
        ]

        # Status is changed only where it is still offline: writing back the status read
        # before the listing would undo a change staff made meanwhile (e.g. maintenance).
        DockerHost.objects.filter(pk=host.pk).update(
            last_seen_at=now, last_error="", engine_version=version
        )
        if host.status == HostStatus.OFFLINE and DockerHost.objects.filter(
            pk=host.pk, status=HostStatus.OFFLINE
        ).update(status=HostStatus.ONLINE):
            record(
                actions.HOST_ONLINE,
                target=host,
                changes={"status": {"before": HostStatus.OFFLINE, "after": HostStatus.ONLINE}},
            )
    return result
