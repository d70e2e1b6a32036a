"""Move a site to another Docker host without dropping a request (hosting/moves.py): its
current image and configuration start there, its routes switch, the old container retires.
Runs here and now unless --queue hands it to a worker."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hosting import moves
from hosting.models import DockerHost, Site


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("site", help="ORGANIZATION/SITE (slugs)")
        parser.add_argument("host", help="the target host's name")
        parser.add_argument("--queue", action="store_true", help="let a worker run it")

    def handle(self, *args, site, host, queue=False, **options):
        org_slug, _, site_slug = site.partition("/")
        found = (
            Site.objects.alive()
            .filter(organization__slug=org_slug, slug=site_slug)
            .select_related("host")
            .first()
        )
        if found is None:
            raise CommandError(f"no site {site} (give ORGANIZATION/SITE)")
        target = DockerHost.objects.filter(name=host).first()
        if target is None:
            raise CommandError(f"no host named {host}")
        try:
            moves.request_move(found, target, actor=None, send=queue)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if queue:
            self.stdout.write(f"{site}: moving from {found.host.name} to {host} (queued)")
            return
        outcome = moves.execute(found.pk)
        found.refresh_from_db()
        if outcome != "moved":
            raise CommandError(f"{site}: {outcome}: {found.move_error}")
        self.stdout.write(f"{site}: moved from {found.previous_host} to {found.host}")
