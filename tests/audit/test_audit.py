"""The audit trail: append-only rows, retention purge, `record` and its rules, redaction, and
the read-only, cursor-paginated audit-logs API of an organization."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services
from accounts.models import Membership, Role
from audit import actions
from audit.models import AuditLog, ImmutableAuditLogError
from audit.services import REDACTED, diff, record, redact
from tests.conftest import client_for, token_client

ACME_LOGS = "/api/v1/organizations/acme/audit-logs/"


def log(org=None, action="user.update", *, at=None, actor=None, label="") -> AuditLog:
    """An audit row written directly, with a chosen time (record() always uses now)."""
    return AuditLog.objects.create(
        organization=org,
        action=action,
        timestamp=at or timezone.now(),
        actor=actor,
        actor_label=actor.email if actor else "system",
        target_label=label,
    )


def ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.content
    return [row["id"] for row in resp.data["results"]]


def acme_ids(cast) -> set[str]:
    return {
        str(pk)
        for pk in AuditLog.objects.filter(organization=cast.org).values_list("pk", flat=True)
    }


# --- append-only rows --------------------------------------------------------------------


@pytest.mark.django_db
def test_saving_an_existing_row_is_refused():
    row = log(label="before")
    row.target_label = "after"

    with pytest.raises(ImmutableAuditLogError):
        row.save()

    row.refresh_from_db()
    assert row.target_label == "before"


@pytest.mark.django_db
def test_queryset_update_is_refused():
    row = log(label="before")

    with pytest.raises(ImmutableAuditLogError):
        AuditLog.objects.filter(pk=row.pk).update(target_label="after")
    with pytest.raises(ImmutableAuditLogError):
        AuditLog.objects.update(target_label="after")

    row.refresh_from_db()
    assert row.target_label == "before"


@pytest.mark.django_db
def test_deleting_rows_is_refused():
    row = log()

    with pytest.raises(ImmutableAuditLogError):
        row.delete()
    with pytest.raises(ImmutableAuditLogError):
        AuditLog.objects.filter(pk=row.pk).delete()
    with pytest.raises(ImmutableAuditLogError):
        AuditLog.objects.all().delete()

    assert AuditLog.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_purge_before_deletes_only_old_rows_in_batches():
    now = timezone.now()
    cutoff = now - timedelta(days=365)
    for n in range(5):
        log(at=cutoff - timedelta(days=n + 1))
    recent = [log(at=cutoff + timedelta(seconds=1)), log(at=now)]

    with CaptureQueriesContext(connection) as queries:
        deleted = AuditLog.objects.purge_before(cutoff, batch_size=2)

    assert deleted == 5
    assert set(AuditLog.objects.values_list("pk", flat=True)) == {r.pk for r in recent}
    deletes = [q for q in queries.captured_queries if q["sql"].upper().startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1


@pytest.mark.django_db
def test_purge_before_with_nothing_old_deletes_nothing():
    log()

    assert AuditLog.objects.purge_before(timezone.now() - timedelta(days=1)) == 0
    assert AuditLog.objects.count() == 1


# --- record() ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_raises():
    with pytest.raises(RuntimeError):
        record(actions.USER_UPDATE, target_label="x")

    assert not AuditLog.objects.exists()
    with transaction.atomic():
        record(actions.USER_UPDATE, target_label="x")
    assert AuditLog.objects.count() == 1


@pytest.mark.django_db
def test_record_refuses_an_unregistered_action():
    with pytest.raises(ValueError, match="unregistered"), transaction.atomic():
        record("user.teleport")

    assert not AuditLog.objects.filter(action="user.teleport").exists()


@pytest.mark.django_db
def test_record_fills_in_the_target_and_a_system_actor(cast):
    with transaction.atomic():
        row = record(actions.ORGANIZATION_UPDATE, organization=cast.org, target=cast.org)

    assert row.target_type == "accounts.organization"
    assert row.target_id == str(cast.org.pk)
    assert row.target_label == "Acme"
    assert row.actor is None
    assert row.actor_label == "system"
    assert row.token_id is None


def test_registering_an_action_twice_raises(monkeypatch):
    monkeypatch.setattr(actions, "REGISTRY", dict(actions.REGISTRY))

    with pytest.raises(actions.DuplicateActionError):
        actions.register("user.login", "Signed in again")
    actions.register("test.once", "A new action")
    with pytest.raises(actions.DuplicateActionError):
        actions.register("test.once", "The same action")

    assert actions.is_registered("test.once")


# --- redaction and diffs -----------------------------------------------------------------


def test_redact_hides_secret_looking_keys_recursively():
    data = {
        "name": "site",
        "password": "hunter2",
        "SECRET": "s",
        "api_token": "t",
        "key_hash": "h",
        "code_hash": "c",
        "api_key": "k",
        "private_key": "p",
        "after": {"email": "a@x.test", "new_password": "p2", "nested": {"client_secret": "x"}},
    }

    out = redact(data)

    assert out == {
        "name": "site",
        "password": REDACTED,
        "SECRET": REDACTED,
        "api_token": REDACTED,
        "key_hash": REDACTED,
        "code_hash": REDACTED,
        "api_key": REDACTED,
        "private_key": REDACTED,
        "after": {
            "email": "a@x.test",
            "new_password": REDACTED,
            "nested": {"client_secret": REDACTED},
        },
    }
    assert data["password"] == "hunter2"  # the input is left alone


def test_redact_hides_named_secret_fields_at_any_depth():
    data = {"value": "plain", "before": {"value": "old"}, "after": {"value": "new", "name": "DB"}}

    out = redact(data, secret_fields=["value"])

    assert out == {
        "value": REDACTED,
        "before": {"value": REDACTED},
        "after": {"value": REDACTED, "name": "DB"},
    }


def test_redact_reaches_into_lists():
    data = {"variables": [{"name": "DB_URL", "password": "hunter2"}, {"name": "DEBUG"}]}

    out = redact(data)

    assert "hunter2" not in repr(out)
    assert out["variables"][1] == {"name": "DEBUG"}


@pytest.mark.django_db
def test_record_stores_redacted_changes():
    with transaction.atomic():
        row = record(
            actions.USER_UPDATE,
            changes={"after": {"password": "hunter2", "value": "v", "name": "n"}},
            secret_fields=["value"],
        )

    row.refresh_from_db()
    assert row.changes == {"after": {"password": REDACTED, "value": REDACTED, "name": "n"}}


def test_diff_keeps_only_changed_fields():
    before = {"name": "Acme", "slug": "acme", "is_active": True}
    after = {"name": "Acme Inc", "slug": "acme", "is_active": False}

    assert diff(before, after) == {
        "before": {"name": "Acme", "is_active": True},
        "after": {"name": "Acme Inc", "is_active": False},
    }
    assert diff(before, dict(before)) == {"before": {}, "after": {}}


@pytest.mark.django_db
def test_service_audit_row_holds_only_the_changed_fields(cast):
    services.update_organization(cast.org, actor=cast.owner, name="Acme Inc", slug="acme")

    row = AuditLog.objects.get(action="organization.update")
    assert row.changes == {"before": {"name": "Acme"}, "after": {"name": "Acme Inc"}}
    assert row.organization == cast.org
    assert row.actor == cast.owner


@pytest.mark.django_db
def test_an_update_that_changes_nothing_writes_no_row(cast):
    services.update_organization(cast.org, actor=cast.owner, name="Acme")

    assert not AuditLog.objects.filter(action="organization.update").exists()


@pytest.mark.django_db
def test_a_failing_service_call_writes_no_audit_row(cast):
    owner = Membership.objects.get(user=cast.owner, organization=cast.org)
    client = client_for(cast.owner)  # signing in is audited: do it before counting
    before = AuditLog.objects.count()

    with pytest.raises(ValidationError):
        services.change_role(owner, Role.VIEWER, actor=cast.owner)
    with pytest.raises(ValidationError):
        services.remove_member(owner, actor=cast.owner)
    resp = client.patch(
        f"/api/v1/organizations/acme/members/{owner.pk}/", {"role": "viewer"}, format="json"
    )

    assert resp.status_code == 400
    assert "role" in resp.json()["fields"]
    assert AuditLog.objects.count() == before
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


# --- the API -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_logs_are_cursor_paginated_newest_first(cast):
    expected = acme_ids(cast)
    assert len(expected) >= 4
    client = client_for(cast.admin)

    first = client.get(ACME_LOGS, {"page_size": 2})

    assert len(ids(first)) == 2
    assert "cursor=" in first.data["next"]
    assert first.data["previous"] is None
    assert "count" not in first.data
    seen, url = [], ACME_LOGS + "?page_size=2"
    while url:
        page = client.get(url)
        seen += ids(page)
        url = page.data["next"]
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    times = [AuditLog.objects.get(pk=pk).timestamp for pk in seen]
    assert times == sorted(times, reverse=True)


@pytest.mark.django_db
def test_filter_by_action_takes_a_comma_list(cast):
    client = client_for(cast.owner)

    added = client.get(ACME_LOGS, {"action": "member.add"})
    both = client.get(ACME_LOGS, {"action": "member.add,organization.create"})

    assert {r["action"] for r in added.data["results"]} == {"member.add"}
    assert len(ids(added)) == 3
    assert {r["action"] for r in both.data["results"]} == {"member.add", "organization.create"}
    assert len(ids(both)) == 4


@pytest.mark.django_db
def test_filter_by_actor(cast):
    own = log(cast.org, actor=cast.admin)

    resp = client_for(cast.owner).get(ACME_LOGS, {"actor": str(cast.admin.pk)})

    assert ids(resp) == [str(own.pk)]


@pytest.mark.django_db
def test_filter_by_time_window(cast):
    now = timezone.now()
    log(cast.org, at=now - timedelta(days=10))
    middle = log(cast.org, at=now - timedelta(days=5))
    log(cast.org, at=now - timedelta(days=1))

    resp = client_for(cast.owner).get(
        ACME_LOGS,
        {
            "since": (now - timedelta(days=6)).isoformat(),
            "until": (now - timedelta(days=2)).isoformat(),
        },
    )

    assert ids(resp) == [str(middle.pk)]


@pytest.mark.django_db
def test_search_matches_actor_target_or_action(cast):
    client = client_for(cast.owner)

    by_target = client.get(ACME_LOGS, {"q": "viewer@"})
    by_action = client.get(ACME_LOGS, {"q": "organization.cre"})

    assert [r["target_label"] for r in by_target.data["results"]] == ["viewer@example.test"]
    assert [r["action"] for r in by_action.data["results"]] == ["organization.create"]


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["member", "viewer"])
def test_members_and_viewers_may_not_read_the_audit_trail(cast, who):
    resp = client_for(getattr(cast, who)).get(ACME_LOGS)

    assert resp.status_code == 403


@pytest.mark.django_db
def test_outsiders_get_404(cast):
    row = AuditLog.objects.filter(organization=cast.org).first()

    assert client_for(cast.outsider).get(ACME_LOGS).status_code == 404
    assert client_for(cast.outsider).get(f"{ACME_LOGS}{row.pk}/").status_code == 404


@pytest.mark.django_db
def test_other_organizations_and_platform_events_never_appear(cast):
    globex_row = log(cast.other_org, "organization.update", label="secret globex plan")
    platform_row = log(None, "user.create", label="platform event")
    client = client_for(cast.owner)

    listing = client.get(ACME_LOGS, {"page_size": 500})

    assert set(ids(listing)) == acme_ids(cast)
    assert str(globex_row.pk) not in ids(listing)
    assert str(platform_row.pk) not in ids(listing)
    assert client.get(f"{ACME_LOGS}{globex_row.pk}/").status_code == 404
    assert client.get(f"{ACME_LOGS}{platform_row.pk}/").status_code == 404
    assert (
        client.get(
            f"{ACME_LOGS}{AuditLog.objects.filter(organization=cast.org).first().pk}/"
        ).status_code
        == 200
    )


@pytest.mark.django_db
def test_token_call_to_the_audit_trail_needs_read_scope(cast):
    assert token_client(cast.owner, ["read"]).get(ACME_LOGS).status_code == 200
    assert token_client(cast.owner, ["write"]).get(ACME_LOGS).status_code == 403


@pytest.mark.django_db
def test_the_audit_api_is_read_only(cast):
    row = AuditLog.objects.filter(organization=cast.org).first()
    client = client_for(cast.owner)
    detail = f"{ACME_LOGS}{row.pk}/"

    assert client.post(ACME_LOGS, {"action": "user.login"}, format="json").status_code == 405
    assert client.patch(detail, {"action": "user.login"}, format="json").status_code == 405
    assert client.put(detail, {"action": "user.login"}, format="json").status_code == 405
    assert client.delete(detail).status_code == 405
    row.refresh_from_db()
    assert AuditLog.objects.filter(pk=row.pk, action=row.action).exists()
