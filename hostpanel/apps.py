from django.apps import AppConfig


class HostpanelConfig(AppConfig):
    """The project package as an app: the tables every app shares (claims)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "hostpanel"
    verbose_name = "Platform"
