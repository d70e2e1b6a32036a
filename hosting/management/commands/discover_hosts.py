"""Ask the discovery providers (HOST_DISCOVERY_PROVIDERS) for Docker hosts; new ones are
recorded as candidates for staff to approve (manage.py approve_host)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from hosting import discovery
from hosting.models import DiscoveredHost


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        try:
            counts = discovery.discover()
        except discovery.DiscoveryError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{counts['new']} new, {counts['seen']} seen again")
        for row in DiscoveredHost.objects.filter(approved_at__isnull=True):
            self.stdout.write(f"  pending approval: {row.name} {row.endpoint} ({row.source})")
