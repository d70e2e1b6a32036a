"""Re-encrypt every secret environment value with the newest ENV_ENCRYPTION_KEYS key."""

from django.core.management.base import BaseCommand

from hosting import services


class Command(BaseCommand):
    help = (
        "After prepending a new key to ENV_ENCRYPTION_KEYS, re-encrypt all secrets with it; "
        "then the old key can be removed."
    )

    def handle(self, *args, **options):
        count = services.rotate_env_keys()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret value(s)."))
