"""The one way hosting code hands work to Celery: by task name, so no module imports
`hosting.tasks` (no import cycle), and tests replace this one function."""

from __future__ import annotations

from typing import Any

from celery import current_app


def send(task: str, *args: Any, countdown: float | None = None) -> None:
    """Send `hosting.tasks.<task>` with `args`, optionally after `countdown` seconds."""
    current_app.send_task(f"hosting.tasks.{task}", args=list(args), countdown=countdown)
