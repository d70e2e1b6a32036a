"""A deployment's build log: written as ordered chunks, read by offset, bounded, trimmed."""

from __future__ import annotations

import logging
import queue
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


_STOP = object()


class LogWriter:
    """A deployment's output, written as ordered chunks by one writer.

    Producers (the pipeline, the build's output) only put text and stage changes on a
    queue. Between `start()` and `stop()` one thread takes them off, cuts chunks (at every
    stage change and every CHUNK_BYTES) and writes them (every CHUNK_BYTES, or after `every`
    seconds, so a quiet build step still shows its last line); a producer never waits for the
    database. `stop()` has the thread write everything it holds and end; after it, writing
    happens in the calling thread (`flush()`), which is how the switch writes its last lines
    inside its own transaction. Offsets are taken by whichever single writer holds the text,
    so the log is in the order it was produced. At most DEPLOY_LOG_MAX_BYTES are kept: the
    tail.
    """

    CHUNK_BYTES = 4096

    def __init__(self, deployment: Deployment, *, every: float = 0.5):
        self.deployment = deployment
        self.every = every
        self.stage = "queued"
        self.buffer: list[str] = []
        self.buffered = 0
        self.next_offset = Deployment.objects.values_list("log_size", flat=True).get(
            pk=deployment.pk
        )
        self.unwritten: list[tuple[int, str, str]] = []
        self.unwritten_bytes = 0
        self.last_write = time.monotonic()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # --- producers ---------------------------------------------------------------------------

    def write(self, text: str) -> None:
        self._put(("text", text))

    def line(self, text: str) -> None:
        self.write(text.rstrip("\n") + "\n")

    def set_stage(self, stage: str) -> None:
        """Output so far belongs to the previous stage: it becomes a chunk under that name,
        written with the next write (no database write of its own)."""
        self._put(("stage", stage))

    def _put(self, item: tuple[str, str]) -> None:
        if self._thread is not None:
            self._queue.put(item)
            return
        self._take(item)
        if self._due():
            self.flush()

    # --- the one writer ----------------------------------------------------------------------

    def start(self) -> None:
        """Hand writing to a thread of its own until `stop()`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """The thread writes everything it was given and ends; writing is the caller's again.
        Call it outside any transaction (the thread needs the database)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def flush(self) -> None:
        """Write every chunk held, in the calling thread (after `stop()`, or never started).
        On failure the chunks are kept for the next write and the error is raised."""
        if self._thread is not None:
            raise RuntimeError("the log's writer thread is running: stop() it first")
        self._cut()
        self._write()

    def close(self) -> None:
        """Everything written before the deployment's final status; safe to call twice."""
        self.stop()
        self.flush()

    def _run(self) -> None:
        from django.db import connection

        try:
            while True:
                wait = max(0.0, self.every - (time.monotonic() - self.last_write))
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = None
                while item is not None and item is not _STOP:
                    self._take(item)
                    if self._due():
                        self._write_logged()
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
                if item is _STOP:
                    break
                if self._due() or time.monotonic() - self.last_write >= self.every:
                    self._write_logged()
            self._write_logged()
        finally:
            connection.close()

    def _take(self, item: tuple[str, str]) -> None:
        kind, value = item
        if kind == "stage":
            self._cut()
            self.stage = value
        else:
            self.buffer.append(value)
            self.buffered += len(value)
            if self.buffered >= self.CHUNK_BYTES:
                self._cut()  # chunks stay small: the bound trims whole chunks

    def _due(self) -> bool:
        return self.unwritten_bytes >= self.CHUNK_BYTES or (
            bool(self.buffer or self.unwritten) and time.monotonic() - self.last_write > self.every
        )

    def _cut(self) -> None:
        """The buffer becomes a chunk at the next offset."""
        if self.buffer:
            text = "".join(self.buffer)
            size = len(text.encode())
            self.unwritten.append((self.next_offset, self.stage, text))
            self.next_offset += size
            self.unwritten_bytes += size
            self.buffer, self.buffered = [], 0

    def _write(self) -> None:
        self.last_write = time.monotonic()
        if not self.unwritten:
            return
        append_chunks(self.deployment, self.unwritten)
        self.unwritten, self.unwritten_bytes = [], 0

    def _write_logged(self) -> None:
        self._cut()
        try:
            self._write()
        except Exception:  # kept; the next write, or flush() after stop(), tries again
            log.warning("deployment log write failed", exc_info=True)


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
