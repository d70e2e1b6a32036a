"""Deployments: git to a running site, zero downtime, and never stuck.

Lifecycle: queued → cloning → building → starting → healthy → succeeded, or failed /
cancelled / timed_out. Every transition is a conditional UPDATE from the state we expect,
timestamped in `transitions` and audited, so a cancel or the reaper racing the runner can
never be overwritten. One deployment per site runs at a time; later requests queue in
order (each is a commit someone asked for; silently superseding one would hide it). A
heartbeat thread proves the worker is alive; the reaper fails deployments whose worker died
and re-sends queued ones whose message was lost.

- `requests`: request, rollback, cancel, `transition`
- `pipeline`: the run of one deployment (steps, workdir, heartbeat)
- `logs`: the build log (write, read, trim)
- `upkeep`: retire, reap, purge
- `queue`: what is sent to the workers, by task name (the seam tests replace)
"""

from hosting.deployments.logs import LogWriter, append_log, read_log, trim_old_logs
from hosting.deployments.pipeline import execute
from hosting.deployments.queue import kick_site_queue
from hosting.deployments.requests import (
    DeploymentAborted,
    cancel,
    request_deployment,
    request_rollback,
    transition,
)
from hosting.deployments.upkeep import purge_webhook_deliveries, reap, retire_containers

__all__ = [
    "DeploymentAborted",
    "LogWriter",
    "append_log",
    "cancel",
    "execute",
    "kick_site_queue",
    "purge_webhook_deliveries",
    "read_log",
    "reap",
    "request_deployment",
    "request_rollback",
    "retire_containers",
    "transition",
    "trim_old_logs",
]
