"""Rotate a tcp:// host's certificates: the panel's client pair (switched at once; the engine
accepts any certificate of the CA) and, with --bundle, a new engine certificate for its
operator to install (the panel accepts the old one until then)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hosting import enrolment
from hosting.models import DockerHost


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--bundle", help="also issue a new engine certificate into DIR")
        parser.add_argument("--days", type=float, default=365)

    def handle(self, *args, name, bundle=None, days=365, **options):
        host = DockerHost.objects.filter(name=name, endpoint__startswith="tcp://").first()
        if host is None:
            raise CommandError(f"no tcp:// host named {name}")
        host = enrolment.rotate_client(host, actor=None, days=days)
        self.stdout.write(f"{name}: new client certificate, valid to {host.tls_client_expires_at}")
        if bundle:
            code = enrolment.rotate_server(host, actor=None, bundle_dir=Path(bundle), days=days)
            self.stdout.write(f"{name}: new engine certificate in {bundle}, code {code}")
