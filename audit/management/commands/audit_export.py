"""Write the audit trail as JSON lines with its chain values: a first line with where the
kept chain starts and its head, then one row per line in sequence order. `audit_verify
--file` checks it anywhere the key is."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from audit import chain


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("output", help="file to write ('-': standard output)")

    def handle(self, *args, output, **options):
        chain.seal()
        head = chain.head()
        out = self.stdout if output == "-" else open(output, "w")  # noqa: SIM115
        try:
            out.write(
                json.dumps(
                    {
                        "start_sequence": head.start_sequence,
                        "start_prev_hash": head.start_prev_hash,
                        "head_sequence": head.sequence,
                        "head_hmac": head.last_hmac,
                    }
                )
                + "\n"
            )
            count = 0
            for row in chain.sealed_rows():
                values = {
                    **chain.content_of(row),
                    **{k: row[k] for k in ("sequence", "prev_hash", "row_hmac")},
                }
                out.write(json.dumps(values, ensure_ascii=False) + "\n")
                count += 1
        finally:
            if out is not self.stdout:
                out.close()
        if output != "-":
            self.stdout.write(f"{count} rows written to {output}")
