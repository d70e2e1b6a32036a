from django.apps import AppConfig
from django.db.models.signals import post_save


class HostingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "hosting"

    def ready(self) -> None:
        from accounts.models import Organization

        post_save.connect(create_quota, sender=Organization, dispatch_uid="hosting.create_quota")


def create_quota(sender, instance, created: bool, **kwargs) -> None:
    """Every organization has its quota from the start, written in the transaction that
    creates the organization (accounts cannot import hosting, so it is told here)."""
    if created and not kwargs.get("raw"):
        from django.conf import settings

        from hosting.models import OrganizationQuota

        OrganizationQuota.objects.get_or_create(
            organization=instance, defaults=settings.DEFAULT_QUOTA
        )
