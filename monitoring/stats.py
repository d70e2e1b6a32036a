"""Platform statistics for staff (seed 001 §4.3, the dashboard counts), in one query per table.

Shown by `GET /api/v1/stats/` and on the admin index. Every count is one conditional
aggregate, so the cost does not depend on how many rows there are beyond the COUNT itself.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from accounts.models import Organization, User
from hosting.models import Container, DockerHost, Domain, HostStatus, ObservedState, Site


def platform_stats() -> dict[str, Any]:
    users = User.objects.aggregate(total=Count("pk"), active=Count("pk", filter=Q(is_active=True)))
    sites = Site.objects.alive().aggregate(
        total=Count("pk"), running=Count("pk", filter=Q(observed_state=ObservedState.RUNNING))
    )
    hosts = DockerHost.objects.aggregate(
        total=Count("pk"), online=Count("pk", filter=Q(status=HostStatus.ONLINE))
    )
    containers = Container.objects.aggregate(
        sites=Count("pk", filter=Q(site__isnull=False)),
        other=Count("pk", filter=Q(site__isnull=True)),
    )
    return {
        "users": users,
        "organizations": Organization.objects.count(),
        "sites": sites,
        "domains": Domain.objects.count(),
        "hosts": hosts,
        "containers": containers["sites"],
        "other_containers": containers["other"],
    }
