"""The audit feed as sentences, and progress rows left out on request."""

from __future__ import annotations

import pytest

from audit import actions
from audit.models import AuditLog
from audit.sentences import PHRASES, sentence
from hosting import services
from tests.conftest import client_for
from tests.hosting.factories import the_site

pytestmark = pytest.mark.django_db


def test_entries_read_as_sentences(cast):
    site = the_site(cast.org)
    services.set_env(site, actor=cast.member, key="DATABASE_URL", value="x")
    entry = AuditLog.objects.filter(action="env.set").latest("timestamp")
    assert sentence(entry) == "member@example.test set env DATABASE_URL"
    services.stop_site(site, actor=cast.owner)
    stop = AuditLog.objects.filter(action="site.stop").latest("timestamp")
    assert sentence(stop) == f"owner@example.test stopped {stop.target_label}"
    listed = client_for(cast.admin).get("/api/v1/organizations/acme/audit-logs/").json()
    assert {"member@example.test set env DATABASE_URL"} <= {e["summary"] for e in listed["results"]}


def test_every_phrase_names_a_registered_action_and_unknown_ones_fall_back():
    assert set(PHRASES) <= set(actions.REGISTRY)
    entry = AuditLog(action="host.ping", actor_label="", target_label="local")
    assert sentence(entry) == "system: Docker host checked (local)"


def test_progress_rows_can_be_left_out_of_the_feed(cast):
    site = the_site(cast.org)
    for action in ("deployment.create", "deployment.progress", "deployment.progress"):
        AuditLog.objects.create(
            action=action, organization=cast.org, target_type="hosting.deployment",
            target_id="d1", target_label=f"{site.slug} #1",
        )  # fmt: skip
    url = "/api/v1/organizations/acme/audit-logs/?exclude_action=deployment.progress"
    kept = [e["action"] for e in client_for(cast.admin).get(url).json()["results"]]
    assert "deployment.create" in kept and "deployment.progress" not in kept
    folded = client_for(cast.admin).get(
        "/api/v1/organizations/acme/audit-logs/?action=deployment.progress&target_id=d1"
    )
    assert len(folded.json()["results"]) == 2
