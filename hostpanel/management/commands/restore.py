"""Restore a backup (manage.py backup) into an empty database. Checks the dump's SHA-256,
the schema and the row counts against the manifest before it commits, and that the
configured keys can read the backup's secrets; then run `manage.py migrate` if this code
is newer than the backup."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hostpanel import backup as backups


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "backup_file", metavar="backup", help="a file written by manage.py backup"
        )
        parser.add_argument(
            "--allow-missing-keys",
            action="store_true",
            help="restore although the configured keys cannot read the backup's secrets",
        )
        parser.add_argument(
            "--write-keys",
            metavar="FILE",
            help="write the keys stored in the backup (backup --include-keys) to FILE as "
            "KEY=value lines for the environment",
        )

    def handle(self, *args, backup_file, allow_missing_keys=False, write_keys=None, **opts):
        path = Path(backup_file)
        with tempfile.TemporaryDirectory(prefix="hostpanel-restore-") as tmp:
            try:
                archive = backups.read_archive(path, Path(tmp))
            except backups.BackupError as exc:
                raise CommandError(str(exc)) from None
        if write_keys:
            self._write_keys(archive.keys, Path(write_keys))
            return
        unknown = backups.schema_problems(archive.manifest)
        if unknown:
            raise CommandError(
                "the backup comes from a newer hostpanel (migrations unknown here: "
                f"{', '.join(unknown)}); restore it with that version"
            )
        problems = backups.key_problems(archive.manifest)
        if problems and not allow_missing_keys:
            raise CommandError(
                "the configured keys cannot read this backup: " + "; ".join(problems)
                + " (set the keys the backup was made with, or --allow-missing-keys)"
            )  # fmt: skip
        try:
            manifest = backups.restore(path)
        except backups.BackupError as exc:
            raise CommandError(str(exc)) from None
        for problem in problems:
            self.stderr.write(f"warning: {problem}")
        rows = sum(manifest["row_counts"].values())
        self.stdout.write(
            f"restored {path} ({manifest['database']}, made {manifest['created_at']}): "
            f"{len(manifest['row_counts'])} tables, {rows} rows, counts match the manifest"
        )

    def _write_keys(self, keys, out: Path) -> None:
        if keys is None:
            raise CommandError("this backup holds no keys (it was made without --include-keys)")
        lines = [
            f"{name}={','.join(value) if isinstance(value, list) else value}"
            for name, value in keys.items()
        ]
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.stdout.write(f"keys written to {out}: {', '.join(keys)}")
