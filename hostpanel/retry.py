"""What every Celery task here shares: which errors are worth a retry, and how long to wait."""

from __future__ import annotations

import random

from django.conf import settings

from hosting.docker import HostError, HostUnavailable

# Transient: the engine may answer on the next try. Anything else is a bug or bad input.
TRANSIENT_ERRORS = (HostUnavailable, HostError)
MAX_BACKOFF_SECONDS = 60.0


def backoff(retries: int) -> float:
    """Exponential backoff with jitter (between half and all of the step), capped."""
    step = min(MAX_BACKOFF_SECONDS, settings.TASK_RETRY_BACKOFF_SECONDS * 2**retries)
    return random.uniform(step / 2, step)
