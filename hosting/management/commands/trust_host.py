"""Trust a host: for tcp://, the code read on the host (the start of the SHA-256 fingerprint
of its server-cert.pem), and the panel checks the engine presents that certificate; for
ssh://, the SHA256 fingerprint of its host key (`ssh-keygen -lf` on the host), and the panel
pins the key its sshd presents when it matches (also how an expected key change is taken)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hosting import enrolment
from hosting.models import DockerHost


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("code")

    def handle(self, *args, name, code, **options):
        host = DockerHost.objects.filter(name=name).first()
        if host is None:
            raise CommandError(f"no host named {name}")
        try:
            host = enrolment.trust(host, actor=None, code=code)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"{host.name} trusted: {host.status}, engine {host.engine_version}")
