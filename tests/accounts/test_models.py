"""Database-level rules of the accounts models and the tenant filter."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Membership, Organization, Role, User, role_at_least
from tests.factories import add_member, make_org, make_user

pytestmark = pytest.mark.django_db


def slugs(queryset) -> set[str]:
    return set(queryset.values_list("slug", flat=True))


def test_email_is_unique_whatever_its_case_in_the_database():
    User.objects.create(email="a@x.test")

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="A@x.test")

    assert User.objects.filter(email__iexact="a@x.test").count() == 1


def test_service_refuses_an_email_in_another_case():
    make_user("someone@example.test")

    with pytest.raises(ValidationError) as exc:
        make_user("SomeOne@Example.TEST")

    assert "email" in exc.value.message_dict


def test_membership_is_unique_per_user_and_organization(cast):
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=cast.member, organization=cast.org, role=Role.VIEWER)

    assert Membership.objects.filter(user=cast.member, organization=cast.org).count() == 1
    # The same user may of course belong to another organization.
    Membership.objects.create(user=cast.member, organization=cast.other_org, role=Role.VIEWER)


def test_every_new_user_owns_a_personal_organization():
    user = make_user("solo.person@example.test", display_name="Solo")

    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.is_personal
    assert membership.organization.is_active
    assert membership.organization.name == "Solo"
    assert Membership.objects.filter(organization=membership.organization).count() == 1


def test_personal_organization_slugs_do_not_collide():
    first = make_user("sam@one.test")
    second = make_user("sam@two.test")

    orgs = [Membership.objects.get(user=u).organization for u in (first, second)]
    assert orgs[0].slug != orgs[1].slug


def test_for_user_returns_only_the_users_organizations(cast):
    personal = Membership.objects.get(user=cast.member, organization__is_personal=True)

    assert slugs(Organization.objects.for_user(cast.member)) == {"acme", personal.organization.slug}
    assert "acme" not in slugs(Organization.objects.for_user(cast.outsider))
    assert "globex" not in slugs(Organization.objects.for_user(cast.owner))
    assert "globex" in slugs(Organization.objects.for_user(cast.other_owner))


def test_for_user_excludes_inactive_organizations(cast):
    Organization.objects.filter(pk=cast.org.pk).update(is_active=False)

    assert "acme" not in slugs(Organization.objects.for_user(cast.owner))


def test_for_user_is_empty_for_inactive_and_anonymous_users(cast):
    User.objects.filter(pk=cast.owner.pk).update(is_active=False)
    cast.owner.refresh_from_db()

    assert not Organization.objects.for_user(cast.owner).exists()
    assert not Organization.objects.for_user(AnonymousUser()).exists()
    assert not Organization.objects.for_user(None).exists()


def test_for_user_has_no_duplicates(cast):
    # Joining through memberships must not repeat an organization.
    extra = make_org(cast.owner, "Extra", slug="extra")
    add_member(extra, cast.member, Role.ADMIN)

    orgs = list(Organization.objects.for_user(cast.member))

    assert len(orgs) == len({o.pk for o in orgs})


def test_scoped_querysets_follow_the_tenant_filter(cast):
    visible = Membership.objects.for_user(cast.viewer)

    assert not visible.filter(organization=cast.other_org).exists()
    assert visible.filter(organization=cast.org).count() == 4


@pytest.mark.parametrize(
    ("role", "minimum", "expected"),
    [
        (Role.OWNER, Role.OWNER, True),
        (Role.OWNER, Role.VIEWER, True),
        (Role.ADMIN, Role.OWNER, False),
        (Role.ADMIN, Role.ADMIN, True),
        (Role.ADMIN, Role.MEMBER, True),
        (Role.MEMBER, Role.ADMIN, False),
        (Role.MEMBER, Role.MEMBER, True),
        (Role.VIEWER, Role.MEMBER, False),
        (Role.VIEWER, Role.VIEWER, True),
        ("admin", "member", True),
        (None, Role.VIEWER, False),
    ],
)
def test_role_at_least_follows_owner_admin_member_viewer(role, minimum, expected):
    assert role_at_least(role, minimum) is expected


def test_createsuperuser_gives_the_user_a_personal_organization_like_the_service(db, monkeypatch):
    from django.core.management import call_command

    from accounts.models import Membership, Role, User
    from audit.models import AuditLog

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-enough-passphrase-42")
    call_command("createsuperuser", email="root@example.test", interactive=False, verbosity=0)

    user = User.objects.get(email="root@example.test")
    assert user.is_staff and user.is_superuser
    assert user.check_password("a-long-enough-passphrase-42")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER and membership.organization.is_personal
    assert AuditLog.objects.filter(action="user.create", target_id=str(user.pk)).exists()
