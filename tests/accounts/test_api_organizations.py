"""/api/v1/organizations/: the caller's tenants, creation, renaming, deactivation."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Organization, Role
from audit.models import AuditLog
from tests.api_mixin import TopLevelEndpointMixin, assert_error, assert_field_errors
from tests.conftest import token_client
from tests.factories import make_org

ORGS = "/api/v1/organizations/"


def org_url(org_or_slug) -> str:
    return f"{ORGS}{getattr(org_or_slug, 'slug', org_or_slug)}/"


def personal_org(user) -> Organization:
    return Organization.objects.get(memberships__user=user, is_personal=True)


def listed(response) -> dict[str, str]:
    """slug -> the caller's role, from a list response."""
    assert response.status_code == 200, response.content
    return {o["slug"]: o["role"] for o in response.json()["results"]}


# --- list and retrieve -------------------------------------------------------------------------


def test_list_shows_only_the_callers_organizations_with_role(cast, as_user):
    assert listed(as_user(cast.owner).get(ORGS)) == {"acme": "owner", "owner": "owner"}
    assert listed(as_user(cast.viewer).get(ORGS)) == {"acme": "viewer", "viewer": "owner"}
    assert listed(as_user(cast.other_owner).get(ORGS)) == {"globex": "owner", "other": "owner"}


def test_retrieve_shows_role_and_hides_others(cast, as_user):
    response = as_user(cast.admin).get(org_url(cast.org))
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert response.json()["is_personal"] is False
    assert_error(as_user(cast.admin).get(org_url(cast.other_org)), 404, "not_found")


def test_anonymous_is_401(cast, api):
    assert_error(api.get(ORGS), 401, "not_authenticated")
    assert_error(api.get(org_url(cast.org)), 401, "not_authenticated")
    assert_error(api.post(ORGS, {"name": "Nope"}), 401, "not_authenticated")
    assert not Organization.objects.filter(name="Nope").exists()


# --- create ------------------------------------------------------------------------------------


def test_create_makes_the_caller_owner_and_is_audited(cast, as_user):
    response = as_user(cast.member).post(
        ORGS, {"name": "Initech", "slug": "initech"}, HTTP_X_REQUEST_ID="org-create-1"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["slug"], body["role"]) == ("Initech", "initech", "owner")
    org = Organization.objects.get(slug="initech")
    assert str(org.pk) == body["id"]
    assert Membership.objects.get(organization=org).user == cast.member
    assert Membership.objects.get(organization=org).role == Role.OWNER

    row = AuditLog.objects.get(action="organization.create", organization=org)
    assert (row.actor, row.request_id) == (cast.member, "org-create-1")
    assert row.changes["after"]["slug"] == "initech"
    assert listed(as_user(cast.member).get(ORGS))["initech"] == "owner"


def test_create_without_slug_derives_a_unique_one(cast, as_user):
    response = as_user(cast.owner).post(ORGS, {"name": "Acme"})
    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "acme-2"


@pytest.mark.parametrize("slug", ["Bad Slug!", "Upper-Case", "ünïcode"])
def test_bad_slug_is_400(cast, as_user, slug):
    response = as_user(cast.owner).post(ORGS, {"name": "X", "slug": slug})
    assert assert_field_errors(response)["slug"]
    assert not Organization.objects.filter(name="X").exists()


def test_duplicate_slug_is_400_even_for_an_organization_you_cannot_see(cast, as_user):
    response = as_user(cast.owner).post(ORGS, {"name": "Copy", "slug": "globex"})
    assert assert_field_errors(response)["slug"] == ["This slug is taken."]
    assert not Organization.objects.filter(name="Copy").exists()


@pytest.mark.parametrize("data", [{}, {"name": ""}, {"name": ["not", "a", "string"]}])
def test_create_without_a_valid_name_is_400(cast, as_user, data):
    response = as_user(cast.owner).post(ORGS, data)
    assert "name" in assert_field_errors(response)


def test_token_restricted_to_an_organization_cannot_create_one(cast):
    client = token_client(cast.owner, ("read", "write"), organization=cast.org)
    response = client.post(ORGS, {"name": "Sneaky"})
    assert_error(response, 403, "permission_denied")
    assert not Organization.objects.filter(name="Sneaky").exists()


def test_unrestricted_token_with_write_can_create(cast):
    response = token_client(cast.owner, ("read", "write")).post(ORGS, {"name": "Tokened"})
    assert response.status_code == 201, response.content


def test_read_only_token_cannot_create(cast):
    response = token_client(cast.owner, ("read",)).post(ORGS, {"name": "Sneaky"})
    assert_error(response, 403, "permission_denied")
    assert not Organization.objects.filter(name="Sneaky").exists()


def test_token_restricted_to_an_organization_sees_only_it(cast):
    client = token_client(cast.owner, ("read",), organization=cast.org)
    assert listed(client.get(ORGS)) == {"acme": "owner"}
    assert_error(client.get(org_url(personal_org(cast.owner))), 404, "not_found")


# --- update ------------------------------------------------------------------------------------


def test_admin_renames(cast, as_user):
    response = as_user(cast.admin).patch(
        org_url(cast.org), {"name": "Acme Corp", "slug": "acme-co"}
    )
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["slug"]) == ("Acme Corp", "acme-co")
    cast.org.refresh_from_db()
    assert (cast.org.name, cast.org.slug) == ("Acme Corp", "acme-co")
    row = AuditLog.objects.get(action="organization.update")
    assert row.actor == cast.admin
    assert row.changes == {
        "before": {"name": "Acme", "slug": "acme"},
        "after": {"name": "Acme Corp", "slug": "acme-co"},
    }
    assert as_user(cast.admin).get(org_url("acme-co")).status_code == 200


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_member_or_viewer_cannot_rename(cast, as_user, who):
    response = as_user(getattr(cast, who)).patch(org_url(cast.org), {"name": "Hijacked"})
    assert_error(response, 403, "permission_denied")
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme"
    assert not AuditLog.objects.filter(action="organization.update").exists()


def test_outsider_cannot_rename(cast, as_user):
    response = as_user(cast.other_owner).patch(org_url(cast.org), {"name": "Hijacked"})
    assert_error(response, 404, "not_found")
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme"


def test_rename_to_a_taken_slug_is_400(cast, as_user):
    response = as_user(cast.owner).patch(org_url(cast.org), {"slug": "globex"})
    assert assert_field_errors(response)["slug"] == ["This slug is taken."]
    cast.org.refresh_from_db()
    assert cast.org.slug == "acme"


def test_put_is_not_allowed(cast, as_user):
    response = as_user(cast.owner).put(org_url(cast.org), {"name": "Acme", "slug": "acme"})
    assert_error(response, 405)


# --- delete (deactivate) -----------------------------------------------------------------------


def test_owner_deletes_by_deactivating(cast, as_user):
    client = as_user(cast.owner)
    response = client.delete(org_url(cast.org), HTTP_X_REQUEST_ID="org-del-1")
    assert response.status_code == 204, response.content

    cast.org.refresh_from_db()
    assert cast.org.is_active is False  # the row and its memberships are kept
    assert Membership.objects.filter(organization=cast.org).count() == 4
    row = AuditLog.objects.get(action="organization.delete")
    assert (row.actor, row.organization, row.request_id) == (cast.owner, cast.org, "org-del-1")
    assert row.changes == {"before": {"is_active": True}, "after": {"is_active": False}}

    assert "acme" not in listed(client.get(ORGS))
    for url in (
        org_url(cast.org),
        f"{org_url(cast.org)}members/",
        f"{org_url(cast.org)}invitations/",
        f"{org_url(cast.org)}audit-logs/",
    ):
        assert_error(client.get(url), 404, "not_found")
    assert_error(as_user(cast.admin).get(f"{org_url(cast.org)}members/"), 404, "not_found")


@pytest.mark.parametrize("who", ["admin", "member"])
def test_only_an_owner_can_delete(cast, as_user, who):
    response = as_user(getattr(cast, who)).delete(org_url(cast.org))
    assert_error(response, 403, "permission_denied")
    cast.org.refresh_from_db()
    assert cast.org.is_active is True


def test_outsider_cannot_delete(cast, as_user):
    assert_error(as_user(cast.other_owner).delete(org_url(cast.org)), 404, "not_found")
    cast.org.refresh_from_db()
    assert cast.org.is_active is True


def test_personal_organization_cannot_be_deleted(cast, as_user):
    mine = personal_org(cast.owner)
    response = as_user(cast.owner).delete(org_url(mine))
    assert "personal organization" in assert_field_errors(response)["organization"][0]
    mine.refresh_from_db()
    assert mine.is_active is True
    assert not AuditLog.objects.filter(action="organization.delete").exists()


# --- filters, ordering, pagination -------------------------------------------------------------


@pytest.fixture
def owner_orgs(cast) -> list[str]:
    """The owner belongs to acme, a personal org and these three."""
    for name in ("Zeta", "Beta", "Alpha Acme"):
        make_org(cast.owner, name)
    return ["acme", "alpha-acme", "beta", "owner", "zeta"]


def test_search_filter(cast, as_user, owner_orgs):
    response = as_user(cast.owner).get(ORGS, {"q": "ACME"})
    assert sorted(listed(response)) == ["acme", "alpha-acme"]


def test_is_personal_filter(cast, as_user, owner_orgs):
    assert list(listed(as_user(cast.owner).get(ORGS, {"is_personal": "true"}))) == ["owner"]
    assert len(listed(as_user(cast.owner).get(ORGS, {"is_personal": "false"}))) == 4


@pytest.mark.parametrize("ordering", ["slug", "-slug"])
def test_ordering(cast, as_user, owner_orgs, ordering):
    slugs = list(listed(as_user(cast.owner).get(ORGS, {"ordering": ordering})))
    assert slugs == sorted(owner_orgs, reverse=ordering.startswith("-"))


def test_pagination(cast, as_user, owner_orgs):
    client = as_user(cast.owner)
    first = client.get(ORGS, {"page_size": 2, "ordering": "slug"}).json()
    assert first["count"] == 5
    assert [o["slug"] for o in first["results"]] == ["acme", "alpha-acme"]
    assert first["previous"] is None and first["next"]
    last = client.get(ORGS, {"page_size": 2, "ordering": "slug", "page": 3}).json()
    assert [o["slug"] for o in last["results"]] == ["zeta"]
    assert last["next"] is None
    assert_error(client.get(ORGS, {"page_size": 2, "page": 4}), 404)


def test_list_query_count_does_not_grow_with_rows(cast, as_user, django_assert_num_queries):
    client = as_user(cast.owner)
    # session, user, page: one page holds them all, so its rows give the count (role is a
    # subquery)
    with django_assert_num_queries(3):
        client.get(ORGS)
    for n in range(5):
        make_org(cast.owner, f"More {n}")
    with django_assert_num_queries(3):
        assert len(listed(client.get(ORGS))) == 7
    with django_assert_num_queries(4):  # and the COUNT when there is a next page
        assert client.get(ORGS, {"page_size": 3}).json()["count"] == 7


# --- the generic endpoint tests --------------------------------------------------------------


class TestOrganizationApi(TopLevelEndpointMixin):
    audit_actions = {
        "create": "organization.create",
        "update": "organization.update",
        "delete": "organization.delete",
    }
    visibility = "own"
    max_list_queries = 3  # session, user, page (role is a subquery)

    def list_url(self):
        return ORGS

    def detail_url(self, obj):
        return org_url(obj)

    def make_object(self, user):
        return make_org(user)

    def create_data(self):
        return {"name": "Brand New"}

    def update_data(self):
        return {"name": "Renamed"}
