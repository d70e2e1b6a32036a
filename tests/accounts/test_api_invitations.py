"""/api/v1/organizations/{org}/invitations/ and POST /api/v1/invitations/{code}/accept/."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import Invitation, Membership, Role
from audit.models import AuditLog
from tests.api_mixin import ApiEndpointMixin, assert_error, assert_field_errors
from tests.factories import make_user

_emails = (f"invitee{n}@example.test" for n in itertools.count(1))


def invitations_url(org) -> str:
    return f"/api/v1/organizations/{org.slug}/invitations/"


def invitation_url(invitation: Invitation) -> str:
    return f"{invitations_url(invitation.organization)}{invitation.pk}/"


def accept_url(code: str) -> str:
    return f"/api/v1/invitations/{code}/accept/"


def invite(cast, email: str | None = None, role: str = Role.MEMBER) -> tuple[Invitation, str]:
    return services.invite(cast.org, email=email or next(_emails), role=role, actor=cast.owner)


class TestInvitationApi(ApiEndpointMixin):
    # Invitations are not edited: revoke one and invite again.
    audit_actions = {"create": "member.invite", "update": None, "delete": "invitation.revoke"}
    min_roles = {"read": Role.ADMIN, "create": Role.ADMIN, "update": None, "delete": Role.ADMIN}
    max_list_queries = 4  # session, user, organization, page (no count: one page)

    def list_url(self, cast):
        return invitations_url(cast.org)

    def detail_url(self, cast, obj):
        return f"{invitations_url(cast.org)}{obj.pk}/"

    def make_object(self, cast):
        return invite(cast)[0]

    def create_data(self, cast):
        return {"email": "new-person@example.test", "role": Role.MEMBER}


# --- inviting ----------------------------------------------------------------------------------


def test_admin_invites_and_sees_the_code_once(cast, as_user):
    client = as_user(cast.admin)
    response = client.post(
        invitations_url(cast.org), {"email": "new@example.test", "role": "admin"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    code = body["code"]
    assert len(code) >= 32
    assert body["status"] == "pending"
    assert body["invited_by"] == "admin@example.test"
    assert (body["email"], body["role"]) == ("new@example.test", "admin")

    listed = client.get(invitations_url(cast.org))
    detail = client.get(f"{invitations_url(cast.org)}{body['id']}/")
    for page in (listed, detail):
        assert page.status_code == 200
        assert code not in page.content.decode()
    assert "code" not in listed.json()["results"][0]
    assert "code" not in detail.json()


def test_the_code_is_stored_only_as_a_hash(cast):
    invitation, code = invite(cast)
    row = Invitation.objects.filter(pk=invitation.pk).values().get()
    assert all(code not in str(value) for value in row.values()), row
    assert row["code_hash"] and row["code_hash"] != code
    for entry in AuditLog.objects.all():
        assert code not in str(entry.changes)


def test_member_cannot_invite(cast, as_user):
    response = as_user(cast.member).post(invitations_url(cast.org), {"email": "x@example.test"})
    assert_error(response, 403, "permission_denied")
    assert not Invitation.objects.exists()


def test_admin_cannot_invite_as_owner(cast, as_user):
    response = as_user(cast.admin).post(
        invitations_url(cast.org), {"email": "boss@example.test", "role": "owner"}
    )
    assert_error(response, 403, "permission_denied")
    assert not Invitation.objects.exists()


def test_owner_can_invite_as_owner(cast, as_user):
    response = as_user(cast.owner).post(
        invitations_url(cast.org), {"email": "boss@example.test", "role": "owner"}
    )
    assert response.status_code == 201, response.content
    assert Invitation.objects.get().role == Role.OWNER


def test_inviting_an_existing_member_is_400(cast, as_user):
    response = as_user(cast.admin).post(invitations_url(cast.org), {"email": "MEMBER@example.test"})
    assert "already a member" in assert_field_errors(response)["email"][0]
    assert not Invitation.objects.exists()


def test_duplicate_pending_invitation_is_400(cast, as_user):
    invite(cast, "twice@example.test")
    response = as_user(cast.admin).post(invitations_url(cast.org), {"email": "twice@example.test"})
    assert "pending invitation" in assert_field_errors(response)["email"][0]
    assert Invitation.objects.count() == 1


def test_after_revoking_the_same_email_can_be_invited_again(cast, as_user):
    first, _ = invite(cast, "again@example.test")
    client = as_user(cast.admin)
    assert client.delete(invitation_url(first)).status_code == 204
    response = client.post(invitations_url(cast.org), {"email": "again@example.test"})
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("email", ["not-an-email", ""])
def test_invalid_email_is_400(cast, as_user, email):
    response = as_user(cast.admin).post(invitations_url(cast.org), {"email": email})
    assert "email" in assert_field_errors(response)


def test_expiry_in_the_past_is_400(cast, as_user):
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    response = as_user(cast.admin).post(
        invitations_url(cast.org), {"email": "late@example.test", "expires_at": past}
    )
    assert "expires_at" in assert_field_errors(response)


# --- revoking ----------------------------------------------------------------------------------


def test_revoke_is_204_and_audited(cast, as_user):
    invitation, _ = invite(cast)
    response = as_user(cast.admin).delete(invitation_url(invitation), HTTP_X_REQUEST_ID="rv-1")
    assert response.status_code == 204, response.content
    invitation.refresh_from_db()
    assert invitation.status == "revoked"
    row = AuditLog.objects.get(action="invitation.revoke")
    assert (row.actor, row.organization, row.request_id) == (cast.admin, cast.org, "rv-1")
    assert row.target_id == str(invitation.pk)


def test_revoking_twice_is_400(cast, as_user):
    invitation, _ = invite(cast)
    client = as_user(cast.admin)
    assert client.delete(invitation_url(invitation)).status_code == 204
    assert "invitation" in assert_field_errors(client.delete(invitation_url(invitation)))


def test_revoking_an_accepted_invitation_is_400(cast, as_user):
    invitation, code = invite(cast, "joiner@example.test")
    services.accept_invitation(code, user=make_user("joiner@example.test"))
    response = as_user(cast.admin).delete(invitation_url(invitation))
    assert "accepted" in assert_field_errors(response)["invitation"][0]
    invitation.refresh_from_db()
    assert invitation.status == "accepted"


# --- accepting ---------------------------------------------------------------------------------


def test_invited_user_accepts(cast, as_user):
    invitation, code = invite(cast, "joiner@example.test", Role.ADMIN)
    joiner = make_user("Joiner@Example.test")
    response = as_user(joiner).post(accept_url(code), HTTP_X_REQUEST_ID="acc-1")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["role"] == "admin"
    assert body["organization"]["slug"] == cast.org.slug
    assert body["organization"]["role"] == "admin"

    assert Membership.objects.get(organization=cast.org, user=joiner).role == Role.ADMIN
    invitation.refresh_from_db()
    assert invitation.status == "accepted"
    assert invitation.accepted_by == joiner
    row = AuditLog.objects.get(action="invitation.accept")
    assert (row.actor, row.organization, row.request_id) == (joiner, cast.org, "acc-1")
    # ... and the new member can now reach the organization.
    assert as_user(joiner).get(f"/api/v1/organizations/{cast.org.slug}/").status_code == 200


def test_an_invitation_is_accepted_once(cast, as_user):
    _, code = invite(cast, "joiner@example.test")
    client = as_user(make_user("joiner@example.test"))
    assert client.post(accept_url(code)).status_code == 201
    assert "code" in assert_field_errors(client.post(accept_url(code)))
    assert Membership.objects.filter(organization=cast.org).count() == 5


def test_a_used_code_cannot_be_reused_by_someone_else(cast, as_user):
    _, code = invite(cast, "joiner@example.test")
    assert as_user(make_user("joiner@example.test")).post(accept_url(code)).status_code == 201
    response = as_user(cast.outsider).post(accept_url(code))
    assert "code" in assert_field_errors(response)
    assert not Membership.objects.filter(organization=cast.org, user=cast.outsider).exists()


def test_accepting_as_another_email_is_400(cast, as_user):
    invitation, code = invite(cast, "joiner@example.test")
    response = as_user(cast.outsider).post(accept_url(code))
    assert "another email" in assert_field_errors(response)["code"][0]
    assert not Membership.objects.filter(organization=cast.org, user=cast.outsider).exists()
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_expired_invitation_is_400(cast, as_user):
    invitation, code = invite(cast, "joiner@example.test")
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    joiner = make_user("joiner@example.test")
    assert "code" in assert_field_errors(as_user(joiner).post(accept_url(code)))
    assert not Membership.objects.filter(organization=cast.org, user=joiner).exists()


def test_revoked_invitation_is_400(cast, as_user):
    invitation, code = invite(cast, "joiner@example.test")
    services.revoke_invitation(invitation, actor=cast.owner)
    joiner = make_user("joiner@example.test")
    assert "code" in assert_field_errors(as_user(joiner).post(accept_url(code)))
    assert not Membership.objects.filter(organization=cast.org, user=joiner).exists()


def test_unknown_code_is_400(cast, as_user):
    invite(cast, "joiner@example.test")
    joiner = make_user("joiner@example.test")
    assert "code" in assert_field_errors(as_user(joiner).post(accept_url("no-such-code")))


def test_invitation_to_a_deactivated_organization_is_400(cast, as_user):
    _, code = invite(cast, "joiner@example.test")
    services.set_organization_active(cast.org, active=False, actor=cast.owner)
    joiner = make_user("joiner@example.test")
    assert "code" in assert_field_errors(as_user(joiner).post(accept_url(code)))
    assert not Membership.objects.filter(organization=cast.org, user=joiner).exists()


def test_anonymous_accept_is_401(cast, api):
    invitation, code = invite(cast, "joiner@example.test")
    assert_error(api.post(accept_url(code)), 401, "not_authenticated")
    invitation.refresh_from_db()
    assert invitation.status == "pending"


# --- filters -----------------------------------------------------------------------------------


@pytest.fixture
def one_of_each(cast):
    """One invitation in each status, keyed by status."""
    pending, _ = invite(cast, "pending@example.test")
    accepted, code = invite(cast, "accepted@example.test")
    services.accept_invitation(code, user=make_user("accepted@example.test"))
    revoked, _ = invite(cast, "revoked@example.test")
    services.revoke_invitation(revoked, actor=cast.owner)
    expired, _ = invite(cast, "expired@example.test")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    return {"pending": pending, "accepted": accepted, "revoked": revoked, "expired": expired}


@pytest.mark.parametrize("status", ["pending", "accepted", "revoked", "expired"])
def test_status_filter(cast, as_user, one_of_each, status):
    response = as_user(cast.admin).get(invitations_url(cast.org), {"status": status})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [str(one_of_each[status].pk)]
    assert results[0]["status"] == status


def test_unknown_status_filter_is_400(cast, as_user, one_of_each):
    response = as_user(cast.admin).get(invitations_url(cast.org), {"status": "lost"})
    assert "status" in assert_field_errors(response)


def test_search_filter(cast, as_user, one_of_each):
    response = as_user(cast.admin).get(invitations_url(cast.org), {"q": "revok"})
    assert [r["email"] for r in response.json()["results"]] == ["revoked@example.test"]
