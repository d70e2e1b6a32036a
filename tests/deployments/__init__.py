"""Deployments API, logs, webhooks and admin without Docker: deployments are made through the
services, the Celery hand-off (task `run_deployment`, sent through `hosting.queue.send`) is
replaced by a list, and the pipeline's own state changes (`deployments.transition`) stand in
for a worker."""

from __future__ import annotations

import json

from django.utils import timezone

from accounts.models import Organization, User
from hosting import deployments
from hosting.models import ACTIVE_DEPLOYMENT_STATES, Deployment, DeploymentStatus, Site
from tests.conftest import route_task
from tests.hosting.factories import SITE_SLUG, make_site, site_url

S = DeploymentStatus
REPO = "file:///tmp/x"
SNAPSHOT = {
    "site": {
        "start_command": "",
        "internal_port": 8080,
        "health_check_path": "/",
        "build_command": "",
    },
    "limits": {"memory_mb": 64, "cpu_percent": 10},
    "env": [{"key": "API_KEY", "value": "gAAAA-not-shown", "is_secret": True}],
}


def no_broker(settings, monkeypatch) -> list[str]:
    """Allow file:// repositories and capture the deployment ids handed to the worker queue
    (nothing reaches a broker): the autouse `enqueued` fixture of tests/deployments/."""
    settings.DEPLOY_ALLOW_FILE_REPOSITORIES = True
    sent: list[str] = []
    route_task(monkeypatch, "run_deployment", lambda pk: sent.append(str(pk)))
    return sent


def deploy_site(org: Organization, slug: str = SITE_SLUG, **fields) -> Site:
    """The organization's site with a repository (made on first use)."""
    site = Site.objects.alive().filter(organization=org, slug=slug).first()
    if site is None:
        fields.setdefault("repository_url", REPO)
        site = make_site(org, name=slug.title(), slug=slug, **fields)
    return site


def request(site: Site, actor: User | None = None, **extra) -> Deployment:
    return deployments.request_deployment(site, actor=actor, trigger="api", **extra)


def move(deployment: Deployment, *statuses: str, **fields) -> Deployment:
    """Walk a deployment through states the way the pipeline does (audited transitions)."""
    for new in statuses:
        extra = dict(fields) if new == statuses[-1] else {}
        if deployment.status == S.QUEUED and new in ACTIVE_DEPLOYMENT_STATES:
            extra.setdefault("started_at", timezone.now())
        assert deployments.transition(deployment, deployment.status, new, **extra), new
    deployment.refresh_from_db()
    return deployment


def succeeded(site: Site, actor: User | None = None) -> Deployment:
    """A deployment that ran to success, with the image and snapshot a rollback needs."""
    deployment = request(site, actor)
    return move(
        deployment,
        S.CLONING,
        S.BUILDING,
        S.STARTING,
        S.HEALTHY,
        S.SUCCEEDED,
        image_tag=f"hostpanel/{site.organization.slug}-{site.slug}:{deployment.number}",
        commit_hash="a" * 40,
        config_snapshot=SNAPSHOT,
    )


def deployments_url(org: Organization, slug: str = SITE_SLUG) -> str:
    return site_url(org, slug, "deployments")


def deployment_url(org: Organization, deployment: Deployment, part: str = "") -> str:
    return f"{deployments_url(org)}{deployment.pk}/{part + '/' if part else ''}"


def parse_events(stream: str) -> list[dict]:
    """Server-sent events as dicts: {"event", "id", "data"} (comments and `retry` dropped)."""
    events = []
    for block in stream.split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events
