"""What every Celery task here shares: how long to wait before a retry. Which errors are
worth one is the engine's to say (`hosting.docker.TRANSIENT_ERRORS`)."""

from __future__ import annotations

import random

from django.conf import settings

MAX_BACKOFF_SECONDS = 60.0


def backoff(retries: int) -> float:
    """Exponential backoff with jitter (between half and all of the step), capped."""
    step = min(MAX_BACKOFF_SECONDS, settings.TASK_RETRY_BACKOFF_SECONDS * 2**retries)
    return random.uniform(step / 2, step)
