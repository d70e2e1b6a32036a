"""Add an ssh:// Docker host, pending until its host key is trusted.

Prints the panel's public key (for the host user's ~/.ssh/authorized_keys; the user needs the
docker group, not root) and the fingerprint the host presents now. Compare it with
`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the host, then
`manage.py trust_host NAME SHA256:...` pins that key.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hosting import enrolment, ssh


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("endpoint", help="ssh://user@host[:port]")
        parser.add_argument("--address", help="where the panel reaches its sites")

    def handle(self, *args, name, endpoint, address=None, **options):
        extra = {"address": address} if address else {}
        try:
            host = enrolment.add_ssh(actor=None, name=name, endpoint=endpoint, **extra)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"{host.name} added, pending trust.")
        self.stdout.write("1. On the host, append to the docker-group user's authorized_keys:")
        self.stdout.write(f"   {ssh.panel_public_key()}")
        try:
            presented = ssh.presented_key(host.endpoint)
        except ValidationError as exc:
            self.stdout.write(f"2. The host did not answer yet ({'; '.join(exc.messages)}).")
        else:
            self.stdout.write(
                f"2. It presents {presented.get_name()} {ssh.fingerprint(presented)}; compare"
                " with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host."
            )
        self.stdout.write(f"3. manage.py trust_host {host.name} SHA256:<what the host printed>")
