"""manage.py import_legacy --from app-hosting-platform|dialup-deploy --source PATH"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from legacy.app_hosting_platform import AppHostingPlatformImporter
from legacy.base import Importer, LegacyImportError, run_import
from legacy.dialup_deploy import DialupDeployImporter

IMPORTERS: dict[str, type[Importer]] = {
    AppHostingPlatformImporter.source: AppHostingPlatformImporter,
    DialupDeployImporter.source: DialupDeployImporter,
}
DEFAULT_ZONES = {"app-hosting-platform": settings.TIME_ZONE, "dialup-deploy": "UTC"}


class Command(BaseCommand):
    help = (
        "Import a legacy system's SQLite database in one transaction (counts checked before "
        "the commit). A second run imports only what is new; --dry-run shows what would happen."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="system", required=True, choices=sorted(IMPORTERS))
        parser.add_argument("--source", required=True, help="the legacy SQLite file (read only)")
        parser.add_argument("--dry-run", action="store_true", help="report, write nothing")
        parser.add_argument(
            "--force", action="store_true", help="merge into a database that holds data already"
        )
        parser.add_argument("--host", default="", help="Docker host for the imported sites")
        parser.add_argument(
            "--time-zone",
            default="",
            help="zone of the source's times written without one (default: "
            "app-hosting-platform TIME_ZONE, dialup-deploy UTC)",
        )

    def handle(self, *args, **options):
        zone_name = options["time_zone"] or DEFAULT_ZONES[options["system"]]
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise CommandError(f"unknown time zone {zone_name!r}") from None
        try:
            importer = IMPORTERS[options["system"]](
                Path(options["source"]), zone=zone, host_name=options["host"]
            )
            report = run_import(importer, dry_run=options["dry_run"], force=options["force"])
        except LegacyImportError as exc:
            raise CommandError(f"import refused, nothing written: {exc}") from None
        self.stdout.write(report.render())
