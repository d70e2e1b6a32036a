from celery import shared_task

from accounts import services, sessions


@shared_task(ignore_result=True)
def purge_expired_codes() -> int:
    """Idempotent cleanup (a DELETE of expired rows): safe to run twice or concurrently."""
    return services.purge_expired_codes()


@shared_task(ignore_result=True)
def purge_expired_sessions() -> int:
    """Sessions past their expiry (a DELETE, idempotent like the above)."""
    return sessions.purge_expired()
