from django.core.management.base import BaseCommand, CommandError

from hosting import proxy


class Command(BaseCommand):
    help = (
        "Load each host's Caddy with the config rendered from the database (bin/run does at start)."
    )

    def handle(self, *args, **options):
        outcomes = proxy.sync_all()
        for host, outcome in sorted(outcomes.items()):
            self.stdout.write(f"{host}: {outcome}")
        if any(o not in ("loaded", "unchanged") for o in outcomes.values()):
            raise CommandError("Some proxies did not take their config (see above).")
