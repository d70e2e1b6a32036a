"""Walk the audit trail's hash chain; name the first row that was changed, removed or
reordered, and exit 1 then. `--file` verifies an export (audit_export) instead of the
database, on any machine that has the key (AUDIT_CHAIN_KEY)."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand

from audit import chain


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--file", help="a JSON lines export written by audit_export")

    def handle(self, *args, file=None, **options):
        if file:
            verdict = self._verify_export(file)
        else:
            chain.seal()
            verdict = chain.verify()
        if verdict.ok:
            self.stdout.write(str(verdict))
            return
        self.stderr.write(f"audit chain NOT intact: {verdict}")
        sys.exit(1)

    def _verify_export(self, path: str) -> chain.Verdict:
        with open(path) as lines:
            header = json.loads(next(lines))
            rows = (json.loads(line) for line in lines)
            return chain.verify_rows(
                rows, header["start_sequence"], header["start_prev_hash"] or chain.GENESIS
            )
