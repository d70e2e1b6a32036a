"""API tokens: created once through a session, stored as a keyed hash, scoped, limited to one
organization when asked, never stronger than the user's current role."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiToken, Membership, Role, User
from audit.models import AuditLog
from tests.api_mixin import TopLevelEndpointMixin
from tests.conftest import client_for, token_client
from tests.factories import add_member, make_token

TOKENS = "/api/v1/tokens/"
ME = "/api/v1/me/"
ACME = "/api/v1/organizations/acme/"
GLOBEX = "/api/v1/organizations/globex/"

pytestmark = pytest.mark.django_db


def bearer(raw: str, **extra) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def token_row(raw: str) -> ApiToken:
    return ApiToken.objects.get(prefix=raw[:11])


def create_token(client: APIClient, **data):
    return client.post(TOKENS, {"name": "ci", "scopes": ["read"], **data}, format="json")


def membership(user: User, org) -> Membership:
    return Membership.objects.get(user=user, organization=org)


# --- creation ----------------------------------------------------------------------------


def test_create_through_session_returns_the_full_token_once(cast):
    client = client_for(cast.owner)

    resp = create_token(client, name="deploy bot", scopes=["read", "deploy"])

    assert resp.status_code == 201, resp.content
    raw = resp.data["token"]
    assert re.fullmatch(r"hp_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}", raw)
    assert resp.data["prefix"] == raw[:11]
    assert re.fullmatch(r"hp_[0-9a-f]{8}", resp.data["prefix"])
    assert resp.data["scopes"] == ["deploy", "read"]
    assert "key_hash" not in resp.data
    # The value works as a bearer token.
    assert bearer(raw).get(ME).status_code == 200

    listing = client.get(TOKENS)
    detail = client.get(f"{TOKENS}{resp.data['id']}/")
    for answer in (listing, detail):
        assert answer.status_code == 200
        assert raw not in answer.content.decode()
        assert raw.split("_", 2)[2] not in answer.content.decode()
        assert b"key_hash" not in answer.content
        assert b'"token"' not in answer.content
    assert [t["id"] for t in listing.data["results"]] == [resp.data["id"]]


def test_stored_hash_is_keyed_and_the_raw_token_is_in_no_column(cast):
    raw = create_token(client_for(cast.owner)).data["token"]
    secret = raw.split("_", 2)[2]
    row = token_row(raw)

    expected = hmac.new(settings.TOKEN_HASH_KEY.encode(), raw.encode(), hashlib.sha256)
    assert row.key_hash == expected.hexdigest()
    assert row.key_hash != hashlib.sha256(raw.encode()).hexdigest()  # keyed, not a bare digest
    for field in ApiToken._meta.concrete_fields:
        assert secret not in str(getattr(row, field.attname)), field.name
    created = AuditLog.objects.get(action="token.create", target_id=str(row.pk))
    assert secret not in json.dumps(created.changes)
    assert created.actor == cast.owner


def test_a_token_cannot_create_tokens(cast):
    client = token_client(cast.owner, ["read", "write", "deploy", "secrets:read"])
    before = ApiToken.objects.count()

    resp = create_token(client)

    assert resp.status_code == 403
    assert "session" in resp.json()["detail"]
    assert ApiToken.objects.count() == before


@pytest.mark.parametrize("scopes", [["admin"], ["read", "bogus"], ["READ"]])
def test_unknown_scope_is_refused(cast, scopes):
    resp = create_token(client_for(cast.owner), scopes=scopes)

    assert resp.status_code == 400
    assert "scopes" in resp.json()["fields"]
    assert not ApiToken.objects.filter(user=cast.owner).exists()


@pytest.mark.parametrize("data", [{"name": "ci", "scopes": []}, {"name": "ci"}])
def test_token_needs_at_least_one_scope(cast, data):
    resp = client_for(cast.owner).post(TOKENS, data, format="json")

    assert resp.status_code == 400
    assert "scopes" in resp.json()["fields"]


def test_expiry_in_the_past_is_refused(cast):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()

    resp = create_token(client_for(cast.owner), expires_at=past)

    assert resp.status_code == 400
    assert "expires_at" in resp.json()["fields"]


def test_expiry_in_the_future_is_kept(cast):
    future = timezone.now() + timedelta(days=3)

    resp = create_token(client_for(cast.owner), expires_at=future.isoformat())

    assert resp.status_code == 201
    assert abs(token_row(resp.data["token"]).expires_at - future) < timedelta(seconds=1)


def test_token_can_be_restricted_to_an_organization_of_yours(cast):
    resp = create_token(client_for(cast.member), organization="acme")

    assert resp.status_code == 201
    assert resp.data["organization"] == "acme"
    assert token_row(resp.data["token"]).organization == cast.org


def test_restriction_to_an_organization_you_are_not_in_is_refused(cast):
    resp = create_token(client_for(cast.owner), organization="globex")

    assert resp.status_code == 400
    assert "organization" in resp.json()["fields"]
    assert not ApiToken.objects.filter(user=cast.owner).exists()


def test_foreign_organization_looks_like_a_nonexistent_one(cast):
    client = client_for(cast.owner)

    foreign = create_token(client, organization="globex").json()
    missing = create_token(client, organization="no-such-org").json()

    assert foreign["fields"]["organization"] == [
        m.replace("no-such-org", "globex") for m in missing["fields"]["organization"]
    ]


# --- scopes on use -----------------------------------------------------------------------


def test_read_only_token_reads_but_cannot_change_anything(cast):
    client = token_client(cast.owner, ["read"])
    admin_membership = membership(cast.admin, cast.org)

    assert client.get(ACME).status_code == 200
    assert client.get(f"{ACME}members/").status_code == 200
    assert client.get(ME).status_code == 200

    refused = [
        client.post("/api/v1/organizations/", {"name": "New"}, format="json"),
        client.patch(ACME, {"name": "Renamed"}, format="json"),
        client.delete(f"{ACME}members/{admin_membership.pk}/"),
        client.patch(ME, {"display_name": "x"}, format="json"),
    ]
    for resp in refused:
        assert resp.status_code == 403
        assert "'write' scope" in resp.json()["detail"]
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme"
    assert Membership.objects.filter(pk=admin_membership.pk).exists()


def test_write_only_token_cannot_read(cast):
    client = token_client(cast.owner, ["write"])

    resp = client.get(ACME)

    assert resp.status_code == 403
    assert "'read' scope" in resp.json()["detail"]


# --- lifecycle ---------------------------------------------------------------------------


def test_expired_token_is_unauthenticated(cast):
    raw = make_token(cast.member, ["read"], expires_at=timezone.now() + timedelta(hours=1))
    client = bearer(raw)
    assert client.get(ME).status_code == 200

    ApiToken.objects.filter(pk=token_row(raw).pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert client.get(ME).status_code == 401


def test_revoked_token_is_unauthenticated_and_the_revocation_audited(cast):
    raw = make_token(cast.member, ["read"])
    token = token_row(raw)
    session = client_for(cast.member)
    assert bearer(raw).get(ME).status_code == 200

    resp = session.delete(f"{TOKENS}{token.pk}/")

    assert resp.status_code == 204
    assert bearer(raw).get(ME).status_code == 401
    token.refresh_from_db()
    assert token.revoked_at is not None
    row = AuditLog.objects.get(action="token.revoke")
    assert row.target_id == str(token.pk)
    assert row.actor == cast.member
    # A second revocation is an error, not a second audit row.
    assert session.delete(f"{TOKENS}{token.pk}/").status_code == 400
    assert AuditLog.objects.filter(action="token.revoke").count() == 1


def test_someone_elses_token_is_not_found(cast):
    token = token_row(make_token(cast.member, ["read"]))
    intruder = client_for(cast.owner)

    assert intruder.get(f"{TOKENS}{token.pk}/").status_code == 404
    assert intruder.delete(f"{TOKENS}{token.pk}/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_malformed_and_unknown_tokens_are_unauthenticated(cast):
    raw = make_token(cast.member, ["read"])
    forged = raw[:12] + ("A" if raw[12] != "A" else "B") + raw[13:]

    for value in (forged, "hp_00000000_nothing", "not-a-token", raw + "x"):
        assert bearer(value).get(ME).status_code == 401, value


def test_inactive_users_token_is_unauthenticated(cast):
    client = token_client(cast.member, ["read"])
    assert client.get(ME).status_code == 200

    User.objects.filter(pk=cast.member.pk).update(is_active=False)

    assert client.get(ME).status_code == 401


def test_last_use_time_and_ip_are_recorded(cast):
    raw = make_token(cast.member, ["read"])
    assert token_row(raw).last_used_at is None
    before = timezone.now()

    assert bearer(raw).get(ME, REMOTE_ADDR="192.0.2.10").status_code == 200

    token = token_row(raw)
    assert before <= token.last_used_at <= timezone.now()
    assert token.last_used_ip == "192.0.2.10"

    bearer(raw).get(ME, REMOTE_ADDR="192.0.2.11")
    assert token_row(raw).last_used_ip == "192.0.2.11"


def test_token_holder_sees_only_that_token(cast):
    first = make_token(cast.owner, ["read"])
    second = make_token(cast.owner, ["read"])
    client = bearer(first)

    listing = client.get(TOKENS)

    assert listing.status_code == 200
    assert [t["id"] for t in listing.data["results"]] == [str(token_row(first).pk)]
    assert client.get(f"{TOKENS}{token_row(second).pk}/").status_code == 404
    # The session sees both.
    assert client_for(cast.owner).get(TOKENS).data["count"] == 2


# --- tenancy and roles -------------------------------------------------------------------


def test_token_restricted_to_one_organization_cannot_reach_another(cast):
    add_member(cast.other_org, cast.owner, Role.MEMBER)
    assert client_for(cast.owner).get(f"{GLOBEX}members/").status_code == 200

    client = token_client(cast.owner, ["read", "write"], organization=cast.org)

    assert client.get(f"{ACME}members/").status_code == 200
    assert client.get(f"{GLOBEX}members/").status_code == 404
    assert client.get(GLOBEX).status_code == 404
    assert client.get(f"{GLOBEX}audit-logs/").status_code == 404
    assert client.patch(GLOBEX, {"name": "x"}, format="json").status_code == 404
    slugs = [o["slug"] for o in client.get("/api/v1/organizations/").data["results"]]
    assert slugs == ["acme"]


def test_token_never_grants_more_than_the_users_current_role(cast):
    client = token_client(cast.owner, ["read", "write"])
    assert client.patch(ACME, {"name": "Acme One"}, format="json").status_code == 200
    services.change_role(membership(cast.admin, cast.org), Role.OWNER, actor=cast.owner)

    services.change_role(membership(cast.owner, cast.org), Role.VIEWER, actor=cast.admin)

    assert client.get(ACME).status_code == 200
    resp = client.patch(ACME, {"name": "Acme Two"}, format="json")
    assert resp.status_code == 403
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme One"

    services.remove_member(membership(cast.owner, cast.org), actor=cast.admin)

    assert client.get(ACME).status_code == 404
    assert client.patch(ACME, {"name": "Acme Three"}, format="json").status_code == 404
    assert client.get(f"{ACME}members/").status_code == 404


def test_audit_row_of_a_token_call_names_the_token(cast):
    raw = make_token(cast.owner, ["read", "write"])

    resp = bearer(raw).patch(ACME, {"name": "Acme Tokened"}, format="json")

    assert resp.status_code == 200
    row = AuditLog.objects.get(action="organization.update")
    assert row.token_id == token_row(raw).pk
    assert row.actor == cast.owner
    assert row.changes == {"before": {"name": "Acme"}, "after": {"name": "Acme Tokened"}}


def test_audit_row_of_a_session_call_has_no_token(cast):
    make_token(cast.owner, ["read", "write"])

    client_for(cast.owner).patch(ACME, {"name": "Acme Session"}, format="json")

    assert AuditLog.objects.get(action="organization.update").token_id is None


# --- the generic endpoint tests --------------------------------------------------------------


class TestTokenApi(TopLevelEndpointMixin):
    audit_actions = {"create": "token.create", "update": None, "delete": "token.revoke"}
    visibility = "own"
    max_list_queries = 3  # session, user, page

    def list_url(self):
        return TOKENS

    def detail_url(self, obj):
        return f"{TOKENS}{obj.pk}/"

    def make_object(self, user):
        token, _ = services.create_api_token(actor=user, name="listed", scopes=["read"])
        return token

    def create_data(self):
        return {"name": "ci", "scopes": ["read"]}
