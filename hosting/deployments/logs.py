"""A deployment's build log: written as ordered chunks, read by offset, bounded, trimmed."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hosting.models import Deployment, DeploymentLogChunk

log = logging.getLogger(__name__)


class LogWriter:
    """Buffers output and writes it as chunks; keeps at most DEPLOY_LOG_MAX_BYTES, the tail."""

    def __init__(self, deployment: Deployment):
        self.deployment = deployment
        self.stage = "queued"
        self.buffer: list[str] = []
        self.buffered = 0
        self.last_flush = time.monotonic()
        self.lock = threading.Lock()
        # Offsets are taken when text leaves the buffer, so chunks written by two threads
        # (the autoflush and the pipeline) keep the order the text was produced in.
        self.next_offset = Deployment.objects.values_list("log_size", flat=True).get(
            pk=deployment.pk
        )
        self.unwritten: list[tuple[int, str, str]] = []

    def start_autoflush(self, every: float = 0.5) -> None:
        """Write buffered output out even when no more comes (a long quiet build step)."""
        self._stop = threading.Event()

        def loop():
            from django.db import connection

            try:
                while not self._stop.wait(every):
                    try:
                        self.flush()
                    except Exception:  # kept in the buffer; the next tick tries again
                        log.warning("deployment log flush failed", exc_info=True)
            finally:
                connection.close()

        self._flusher = threading.Thread(target=loop, daemon=True)
        self._flusher.start()

    def stop_autoflush(self) -> None:
        if getattr(self, "_flusher", None) is not None:
            self._stop.set()
            self._flusher.join(timeout=10)

    def close(self) -> None:
        """Write everything out, from this thread only: a chunk the autoflush thread was
        still writing could otherwise land after the final status a reader stops at."""
        self.stop_autoflush()
        self.flush()

    def write(self, text: str) -> None:
        with self.lock:
            self.buffer.append(text)
            self.buffered += len(text)
            due = self.buffered >= 4096 or time.monotonic() - self.last_flush > 0.5
        if due:
            self.flush()

    def set_stage(self, stage: str) -> None:
        """Output so far belongs to the previous stage: it becomes a chunk under that name,
        written with the next flush (no database write of its own)."""
        with self.lock:
            self._cut()
            self.stage = stage

    def line(self, text: str) -> None:
        self.write(text.rstrip("\n") + "\n")

    def _cut(self) -> None:
        """The buffer becomes a chunk at the next offset (called with the lock held)."""
        if self.buffer:
            text = "".join(self.buffer)
            self.unwritten.append((self.next_offset, self.stage, text))
            self.next_offset += len(text.encode())
            self.buffer, self.buffered = [], 0

    def flush(self) -> None:
        # The database write happens outside the lock: a writer waiting for SQLite's lock
        # must never block the thread that holds it (the switch logs inside its transaction).
        with self.lock:
            self.last_flush = time.monotonic()
            self._cut()
            pending, self.unwritten = self.unwritten, []
        if not pending:
            return
        try:
            append_chunks(self.deployment, pending)
        except Exception:
            with self.lock:  # not lost: written with the next flush
                self.unwritten = pending + self.unwritten
            raise


def append_log(deployment: Deployment, stage: str, text: str, offset: int | None = None) -> None:
    """Store a chunk at `offset` (by default the end of the log) and keep the log bounded."""
    with transaction.atomic():
        if offset is None:
            offset = (
                Deployment.objects.select_for_update()
                .values_list("log_size", flat=True)
                .get(pk=deployment.pk)
            )
        append_chunks(deployment, [(offset, stage, text)])


def append_chunks(deployment: Deployment, chunks: list[tuple[int, str, str]]) -> None:
    """Store (offset, stage, text) chunks, in order, in one transaction; keep the log bounded."""
    sizes = [len(text.encode()) for _offset, _stage, text in chunks]
    with transaction.atomic():
        DeploymentLogChunk.objects.bulk_create(
            DeploymentLogChunk(deployment_id=deployment.pk, offset=offset, stage=stage, text=text)
            for offset, stage, text in chunks
        )
        Deployment.objects.filter(pk=deployment.pk).update(log_size=F("log_size") + sum(sizes))
        keep_from = chunks[-1][0] + sizes[-1] - settings.DEPLOY_LOG_MAX_BYTES
        if keep_from > 0:
            # Bounded: drop the oldest chunks that end before the kept tail starts.
            old = DeploymentLogChunk.objects.filter(
                deployment_id=deployment.pk, offset__lt=keep_from
            ).order_by("offset")
            ids = list(old.values_list("pk", "offset", "text"))
            doomed = [pk for pk, start, body in ids if start + len(body.encode()) <= keep_from]
            DeploymentLogChunk.objects.filter(pk__in=doomed).delete()


def read_log(deployment: Deployment, after: int = -1) -> dict[str, Any]:
    """Chunks starting after byte `after`, for polling; `truncated` when the head was trimmed."""
    chunks = list(
        DeploymentLogChunk.objects.filter(deployment=deployment, offset__gt=after)
        .order_by("offset")
        .values("offset", "stage", "text")
    )
    first = DeploymentLogChunk.objects.filter(deployment=deployment).order_by("offset").first()
    return {
        "chunks": chunks,
        "next_after": chunks[-1]["offset"] if chunks else after,
        "truncated_before": first.offset if first is not None and first.offset > 0 else 0,
    }


# --- the pipeline ---------------------------------------------------------------------------


def trim_old_logs(now=None) -> int:
    """Seed 002: build logs of deployments finished over DEPLOY_LOG_RETENTION_DAYS ago go;
    the last chunk (the tail, where the verdict is) is kept."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DEPLOY_LOG_RETENTION_DAYS)
    trimmed = 0
    for deployment in Deployment.objects.filter(
        finished_at__lt=cutoff, log_archived_at__isnull=True
    ):
        last = deployment.chunks.order_by("-offset").values_list("pk", flat=True).first()
        with transaction.atomic():
            deployment.chunks.exclude(pk=last).delete()
            Deployment.objects.filter(pk=deployment.pk).update(log_archived_at=now)
        trimmed += 1
    return trimmed
