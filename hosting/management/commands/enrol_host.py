"""Enrol a tcp:// Docker host with the panel's CA: writes the engine's certificate bundle,
saves the host pending, prints the code to compare and the dockerd flags. Then, on the host,
`openssl x509 -noout -fingerprint -sha256 -in server-cert.pem` starts with that code; run
`manage.py trust_host NAME CODE` with what it shows there."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hosting import enrolment


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("endpoint", help="tcp://address:port the panel dials")
        parser.add_argument("--bundle", required=True, help="directory for the engine's files")
        parser.add_argument("--address", help="where the panel reaches the host's sites")
        parser.add_argument("--days", type=float, default=365, help="certificate lifetime")

    def handle(self, *args, name, endpoint, bundle, address=None, days=365, **options):
        extra = {"address": address} if address else {}
        try:
            host, code = enrolment.enrol(
                actor=None, name=name, endpoint=endpoint, bundle_dir=Path(bundle),
                days=days, **extra,
            )  # fmt: skip
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        listen = endpoint.removeprefix("tcp://")
        self.stdout.write(
            f"{host.name} enrolled, pending trust. Engine files in {bundle}; start it with\n"
            f"  {enrolment.DOCKERD_FLAGS.format(dir=bundle, listen=listen)}\n"
            f"code: {code}\n"
        )
