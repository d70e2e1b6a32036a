"""A deployment's log and status as server-sent events, and when a log is complete."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone

from hosting import deployments
from hosting.api.deployments.serializers import progress_of
from hosting.models import Deployment

# Server-sent events: how often the database is read, when a quiet stream sends a comment
# so proxies keep it open, and how long one stream may last (the browser's EventSource
# reconnects by itself, resuming with Last-Event-ID).
STREAM_POLL_SECONDS = 0.5
STREAM_KEEPALIVE_SECONDS = 15.0
STREAM_MAX_SECONDS = 15 * 60
STREAM_RETRY_MS = 3000
# A worker writes its last buffered output just after the final transition: a log is
# complete this long after the deployment ended (at once if it never started).
LOG_SETTLE_SECONDS = 2.0

pause_between_polls = time.sleep  # the seam tests replace to act between two polls


def log_finished(deployment: Deployment, now=None) -> bool:
    """The deployment has ended and no more output will come."""
    if not deployment.is_final:
        return False
    if deployment.started_at is None or deployment.finished_at is None:
        return True
    now = now or timezone.now()
    return now - deployment.finished_at >= timedelta(seconds=LOG_SETTLE_SECONDS)


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_stream(deployment_id, after: int = -1) -> Iterator[str]:
    """Server-sent events for one deployment's log and status, until it ends."""
    started = last_sent = time.monotonic()
    status_sent = None
    yield f"retry: {STREAM_RETRY_MS}\n\n"
    while True:
        deployment = Deployment.objects.filter(pk=deployment_id).first()
        if deployment is None:
            yield _event("end", {"status": None, "error": "The deployment no longer exists."})
            return
        # Whether it has ended is decided before reading: all output of an ended one is then in.
        finished = log_finished(deployment)
        log = deployments.read_log(deployment, after)
        if deployment.status != status_sent:
            status_sent = deployment.status
            last_sent = time.monotonic()
            yield _event(
                "status",
                {
                    "status": deployment.status,
                    "progress": progress_of(deployment),
                    "error": deployment.error,
                    "truncated_before": log["truncated_before"],
                },
            )
        for chunk in log["chunks"]:
            after = chunk["offset"]
            last_sent = time.monotonic()
            yield _event("log", chunk, chunk["offset"])
        if finished:
            yield _event("end", {"status": deployment.status, "error": deployment.error})
            return
        now = time.monotonic()
        if now - started >= STREAM_MAX_SECONDS:
            yield ": stream time limit reached; reconnect to continue\n\n"
            return
        if now - last_sent >= STREAM_KEEPALIVE_SECONDS:
            last_sent = now
            yield ": keepalive\n\n"
        pause_between_polls(STREAM_POLL_SECONDS)
