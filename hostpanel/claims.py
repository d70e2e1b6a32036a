"""Leases that keep a periodic job from running twice at once, across workers and beats.

A claim is one conditional UPDATE on a TaskClaim row (healthchecks' pattern): it succeeds
only where the previous lease has expired, so exactly one caller gets it. Released leases
stay held until `min_interval` after the start, so a second beat firing the same schedule a
moment later finds the job already done instead of running it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from hostpanel.models import TaskClaim


@contextmanager
def claim(name: str, *, ttl: timedelta, min_interval: timedelta = timedelta(0)) -> Iterator[bool]:
    """`with claim("sync:host-1", ttl=...) as mine:` — do the work only when `mine`.

    `ttl` bounds how long a crashed holder blocks others; keep it above the job's hard
    time limit so a slow but live run is never doubled.
    """
    owner = uuid.uuid4().hex
    now = timezone.now()
    if not TaskClaim.objects.filter(name=name).exists():
        try:
            with transaction.atomic():
                TaskClaim.objects.create(name=name, expires_at=now - timedelta(seconds=1))
        except IntegrityError:
            pass  # another worker created it first; the UPDATE below decides
    taken = TaskClaim.objects.filter(name=name, expires_at__lte=now).update(
        owner=owner, expires_at=now + ttl, last_started_at=now, runs=F("runs") + 1
    )
    if not taken:
        yield False
        return
    try:
        yield True
    finally:
        finished = timezone.now()
        TaskClaim.objects.filter(name=name, owner=owner).update(
            expires_at=max(finished, now + min_interval), last_finished_at=finished
        )
