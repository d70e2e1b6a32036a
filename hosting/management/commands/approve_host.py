"""Approve a discovered host: a tcp:// one is enrolled with the panel's CA (its files go to
--bundle; then trust_host with the code), an ssh:// one is added."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hosting import discovery
from hosting.models import DiscoveredHost


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--bundle", help="directory for a tcp:// engine's files")

    def handle(self, *args, name, bundle=None, **options):
        row = DiscoveredHost.objects.filter(name=name).first()
        if row is None:
            raise CommandError(f"no discovered host named {name}")
        try:
            host, code = discovery.approve(
                row, actor=None, bundle_dir=Path(bundle) if bundle else None
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if code:
            self.stdout.write(f"{host.name} enrolled, pending trust; code {code}")
        else:
            self.stdout.write(f"{host.name} added ({host.endpoint})")
