"""Real Celery worker and beat processes against real Redis and the test database.

The test database must be committed to be seen by another process: tests using these run
with `transactional_db`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
# This test run's own queue: other runs on the same Redis never take its messages.
QUEUE = f"hp-test-{os.getpid()}"


def database_url() -> str:
    """The URL of the test database this process is using, for child processes."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


def clear_queue(client: redis.Redis) -> None:
    """Drop this run's messages (and only them: other runs may share the server)."""
    for key in client.scan_iter(f"*{QUEUE}*"):
        client.delete(key)


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"Redis not reachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return client


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=REDIS_URL,
        CELERY_RESULT_BACKEND="",
        DJANGO_SETTINGS_MODULE="hostpanel.settings",
        PYTHONUNBUFFERED="1",
        TASK_RETRY_BACKOFF_SECONDS="0.2",
        CELERY_TASK_DEFAULT_QUEUE=QUEUE,
    )
    env.update(extra)
    return env


class Process:
    """A child process with its output in a file, killed (group and all) at the end."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no {text!r} in {timeout}s:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a prefork worker and its children)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()
        self._log.close()


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "hostpanel", *args]


def start_worker(log_dir: Path, *, concurrency: int = 2, **env: str) -> Process:
    name = f"worker-{uuid.uuid4().hex[:6]}"
    proc = Process(
        name,
        celery(
            "worker",
            "-l",
            "info",
            "-n",
            f"{name}@%h",
            "--concurrency",
            str(concurrency),
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ),
        child_env(**env),
        log_dir,
    )
    proc.wait_for_log("ready.", timeout=60)
    return proc


def start_beat(log_dir: Path, **env: str) -> Process:
    name = f"beat-{uuid.uuid4().hex[:6]}"
    return Process(
        name,
        celery(
            "beat",
            "-l",
            "info",
            "--schedule",
            str(log_dir / f"{name}-schedule"),
            "--max-interval",
            "1",
        ),
        child_env(**env),
        log_dir,
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.2)


def send(task, *args) -> None:
    """Queue a task on the test Redis broker (this process's app defaults to another one)."""
    from hostpanel.celery import app

    with app.connection_for_write(REDIS_URL) as conn:
        task.apply_async(args, connection=conn, queue=QUEUE)
