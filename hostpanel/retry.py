"""What every Celery task here shares: which errors are worth a retry, and how long to wait."""

from __future__ import annotations

from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from hosting.docker import HostError, HostUnavailable

# Transient: the engine may answer on the next try. Anything else is a bug or bad input.
TRANSIENT_ERRORS = (HostUnavailable, HostError)


def backoff(retries: int) -> int:
    """Exponential backoff with full jitter, capped at a minute."""
    return get_exponential_backoff_interval(
        factor=settings.TASK_RETRY_BACKOFF_SECONDS, retries=retries, maximum=60, full_jitter=True
    )
