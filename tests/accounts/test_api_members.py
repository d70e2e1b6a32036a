"""/api/v1/organizations/{org}/members/: roles, the last-owner rule, leaving, audit."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Role
from audit.models import AuditLog
from tests.api_mixin import ApiEndpointMixin, assert_error, assert_field_errors
from tests.conftest import token_client
from tests.factories import add_member, make_user


def members_url(org) -> str:
    return f"/api/v1/organizations/{org.slug}/members/"


def member_url(membership: Membership) -> str:
    return f"{members_url(membership.organization)}{membership.pk}/"


def membership(cast, user) -> Membership:
    return Membership.objects.get(organization=cast.org, user=user)


class TestMemberApi(ApiEndpointMixin):
    # Members join through invitations: there is no create here.
    audit_actions = {"create": None, "update": "member.update", "delete": "member.remove"}
    min_roles = {"read": Role.VIEWER, "create": None, "update": Role.ADMIN, "delete": Role.ADMIN}
    max_list_queries = 4  # session, user, organization, page (no count: one page)

    def list_url(self, cast):
        return members_url(cast.org)

    def detail_url(self, cast, obj):
        return f"{members_url(cast.org)}{obj.pk}/"

    def make_object(self, cast):
        return add_member(cast.org, make_user(), Role.MEMBER)

    def update_data(self, cast):
        return {"role": Role.VIEWER}


def test_list_shows_every_member_with_role(cast, as_user):
    response = as_user(cast.viewer).get(members_url(cast.org))
    assert response.status_code == 200
    roles = {m["user"]["email"]: m["role"] for m in response.json()["results"]}
    assert roles == {
        "owner@example.test": "owner",
        "admin@example.test": "admin",
        "member@example.test": "member",
        "viewer@example.test": "viewer",
    }


def test_role_filter(cast, as_user):
    response = as_user(cast.viewer).get(members_url(cast.org), {"role": ["admin", "viewer"]})
    emails = sorted(m["user"]["email"] for m in response.json()["results"])
    assert emails == ["admin@example.test", "viewer@example.test"]


# --- the last owner --------------------------------------------------------------------------


def test_demoting_the_last_owner_is_400(cast, as_user):
    mine = membership(cast, cast.owner)
    response = as_user(cast.owner).patch(member_url(mine), {"role": "admin"})
    fields = assert_field_errors(response)
    assert "at least one owner" in fields["role"][0]
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


def test_removing_the_last_owner_is_400(cast, as_user):
    mine = membership(cast, cast.owner)
    response = as_user(cast.owner).delete(member_url(mine))
    fields = assert_field_errors(response)
    assert "at least one owner" in fields["role"][0]
    assert Membership.objects.filter(pk=mine.pk).exists()


def test_with_two_owners_one_can_step_down(cast, as_user):
    owner = as_user(cast.owner)
    promoted = owner.patch(member_url(membership(cast, cast.admin)), {"role": "owner"})
    assert promoted.status_code == 200, promoted.content
    demoted = owner.patch(member_url(membership(cast, cast.owner)), {"role": "admin"})
    assert demoted.status_code == 200, demoted.content
    assert demoted.json()["role"] == "admin"
    assert membership(cast, cast.owner).role == Role.ADMIN
    assert membership(cast, cast.admin).role == Role.OWNER


def test_with_two_owners_one_can_leave(cast, as_user):
    add_member(cast.org, make_user("second-owner@example.test"), Role.OWNER)
    response = as_user(cast.owner).delete(member_url(membership(cast, cast.owner)))
    assert response.status_code == 204, response.content
    assert not Membership.objects.filter(organization=cast.org, user=cast.owner).exists()


# --- who may change whom -----------------------------------------------------------------------


def test_admin_cannot_promote_to_owner(cast, as_user):
    target = membership(cast, cast.member)
    response = as_user(cast.admin).patch(member_url(target), {"role": "owner"})
    assert_error(response, 403, "permission_denied")
    target.refresh_from_db()
    assert target.role == Role.MEMBER


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_admin_cannot_change_or_remove_an_owner(cast, as_user, method):
    target = membership(cast, cast.owner)
    client = as_user(cast.admin)
    if method == "patch":
        response = client.patch(member_url(target), {"role": "member"})
    else:
        response = client.delete(member_url(target))
    assert_error(response, 403, "permission_denied")
    target.refresh_from_db()
    assert target.role == Role.OWNER


def test_admin_can_promote_a_member_to_admin(cast, as_user):
    target = membership(cast, cast.member)
    response = as_user(cast.admin).patch(member_url(target), {"role": "admin"})
    assert response.status_code == 200, response.content
    target.refresh_from_db()
    assert target.role == Role.ADMIN


@pytest.mark.parametrize(("actor", "target"), [("member", "viewer"), ("viewer", "member")])
def test_member_or_viewer_cannot_change_roles(cast, as_user, actor, target):
    theirs = membership(cast, getattr(cast, target))
    response = as_user(getattr(cast, actor)).patch(member_url(theirs), {"role": "admin"})
    assert_error(response, 403, "permission_denied")
    theirs.refresh_from_db()
    assert theirs.role == target


def test_nobody_can_promote_themselves(cast, as_user):
    mine = membership(cast, cast.member)
    response = as_user(cast.member).patch(member_url(mine), {"role": "owner"})
    assert_error(response, 403, "permission_denied")
    mine.refresh_from_db()
    assert mine.role == Role.MEMBER


def test_unknown_role_is_400(cast, as_user):
    response = as_user(cast.owner).patch(
        member_url(membership(cast, cast.member)), {"role": "emperor"}
    )
    assert "role" in assert_field_errors(response)


# --- leaving and losing access ---------------------------------------------------------------


@pytest.mark.parametrize("who", ["viewer", "member", "admin"])
def test_any_member_can_leave(cast, as_user, who):
    user = getattr(cast, who)
    client = as_user(user)
    response = client.delete(member_url(membership(cast, user)))
    assert response.status_code == 204, response.content
    assert not Membership.objects.filter(organization=cast.org, user=user).exists()
    assert client.get(f"/api/v1/organizations/{cast.org.slug}/").status_code == 404


def test_removed_member_loses_access_at_once(cast, as_user):
    session = as_user(cast.member)
    token = token_client(cast.member, ("read", "write"))
    assert session.get(members_url(cast.org)).status_code == 200
    assert token.get(members_url(cast.org)).status_code == 200

    removed = as_user(cast.admin).delete(member_url(membership(cast, cast.member)))
    assert removed.status_code == 204, removed.content

    for client in (session, token):
        assert_error(client.get(f"/api/v1/organizations/{cast.org.slug}/"), 404, "not_found")
        assert_error(client.get(members_url(cast.org)), 404, "not_found")
        slugs = [o["slug"] for o in client.get("/api/v1/organizations/").json()["results"]]
        assert cast.org.slug not in slugs


def test_demoted_admin_loses_admin_rights_at_once(cast, as_user):
    client = as_user(cast.admin)
    as_user(cast.owner).patch(member_url(membership(cast, cast.admin)), {"role": "viewer"})
    response = client.patch(member_url(membership(cast, cast.member)), {"role": "viewer"})
    assert_error(response, 403, "permission_denied")


def test_members_of_another_organization_are_404(cast, as_user):
    theirs = Membership.objects.get(organization=cast.other_org, user=cast.other_owner)
    # Through this organization's URL, and through the other organization's own.
    wrong_org = f"{members_url(cast.org)}{theirs.pk}/"
    assert_error(as_user(cast.owner).get(wrong_org), 404, "not_found")
    assert_error(as_user(cast.owner).delete(wrong_org), 404, "not_found")
    assert_error(as_user(cast.owner).get(member_url(theirs)), 404, "not_found")
    assert Membership.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("member_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_malformed_or_unknown_id_is_404(cast, as_user, member_id):
    assert_error(as_user(cast.owner).get(f"{members_url(cast.org)}{member_id}/"), 404, "not_found")


# --- audit -------------------------------------------------------------------------------------


def test_role_change_is_audited_with_before_and_after(cast, as_user):
    target = membership(cast, cast.member)
    as_user(cast.admin).patch(member_url(target), {"role": "viewer"}, HTTP_X_REQUEST_ID="chg-1")
    row = AuditLog.objects.get(action="member.update")
    assert row.actor == cast.admin
    assert row.organization == cast.org
    assert row.target_id == str(target.pk)
    assert row.target_label == "member@example.test"
    assert row.request_id == "chg-1"
    assert row.changes == {"before": {"role": "member"}, "after": {"role": "viewer"}}


def test_unchanged_role_leaves_no_audit_row(cast, as_user):
    target = membership(cast, cast.member)
    response = as_user(cast.admin).patch(member_url(target), {"role": "member"})
    assert response.status_code == 200
    assert not AuditLog.objects.filter(action="member.update").exists()


def test_removal_is_audited_with_before(cast, as_user):
    target = membership(cast, cast.member)
    as_user(cast.admin).delete(member_url(target))
    row = AuditLog.objects.get(action="member.remove")
    assert row.actor == cast.admin
    assert row.organization == cast.org
    assert row.target_id == str(target.pk)
    assert row.changes == {"before": {"user": "member@example.test", "role": "member"}}


def test_leaving_is_audited_as_the_leaver(cast, as_user):
    as_user(cast.viewer).delete(member_url(membership(cast, cast.viewer)))
    row = AuditLog.objects.get(action="member.remove")
    assert row.actor == cast.viewer
    assert row.changes["before"] == {"user": "viewer@example.test", "role": "viewer"}
