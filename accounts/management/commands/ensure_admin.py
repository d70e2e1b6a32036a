"""Create the first staff user if none exists (used by bin/run)."""

import os
import secrets

from django.core.management.base import BaseCommand

from accounts import services
from accounts.models import User


class Command(BaseCommand):
    help = (
        "Create the first staff user from HOSTPANEL_ADMIN_EMAIL / HOSTPANEL_ADMIN_PASSWORD; "
        "a password is generated and printed when none is given. Does nothing if it exists."
    )

    def handle(self, *args, **options):
        email = os.environ.get("HOSTPANEL_ADMIN_EMAIL", "admin@localhost")
        if User.objects.filter(email__iexact=email).exists():
            self.stdout.write(f"Staff user {email} exists; password unchanged.")
            return
        password = os.environ.get("HOSTPANEL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        services.create_user(
            email=email,
            password=password,
            display_name="Administrator",
            is_staff=True,
            is_superuser=True,
        )
        shown = password if "HOSTPANEL_ADMIN_PASSWORD" not in os.environ else "(from env)"
        self.stdout.write(self.style.SUCCESS(f"Created staff user {email} password {shown}"))
