"""Back up the database into one file with a manifest (schema, row counts, the fingerprints
of the keys needed to read its secrets). Safe while the panel runs and writes."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from hostpanel import backup


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "output",
            nargs="?",
            help="file to write (default: var/backups/hostpanel-<time>.tar); a directory "
            "gets a file named so inside it",
        )
        parser.add_argument(
            "--include-keys",
            action="store_true",
            help="put the keys themselves into the backup (anyone with the file can then "
            "read every secret; keep it like the keys)",
        )

    def handle(self, *args, output=None, include_keys=False, **options):
        from django.conf import settings

        name = f"hostpanel-{timezone.now():%Y%m%dT%H%M%SZ}.tar"
        if output is None:
            path = Path(settings.VAR_DIR) / "backups" / name
        else:
            path = Path(output)
            if path.is_dir():
                path = path / name
        try:
            manifest = backup.backup(path, include_keys=include_keys)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        rows = sum(manifest["row_counts"].values())
        self.stdout.write(
            f"backup written to {path}: {manifest['database']}, "
            f"{len(manifest['row_counts'])} tables, {rows} rows, {manifest['bytes']} bytes"
            + (" (keys included)" if include_keys else "")
        )
