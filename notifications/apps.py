from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from audit import services as audit_services
        from notifications import events

        audit_services.after_record.append(events.on_audit_entry)
