"""The admin for accounts and audit: every change goes through a service and is audited."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts import secrets as creds
from accounts import services
from accounts.forms import BLOCKED_MESSAGE
from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    RegistrationCode,
    Role,
    User,
)
from audit.models import AuditLog
from tests.factories import PASSWORD, make_token, make_user

NEW_PASSWORD = "another long passphrase 7"


class _FormInputs(HTMLParser):
    """What a browser would submit from a page: named inputs, ticked boxes, chosen options."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, str] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "checkbox"):
            self.data[name] = attrs.get("value") or ""
        elif tag == "input" and name and "checked" in attrs:
            self.data[name] = "on"
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.data[self._select] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def form_data(client: Client, page_url: str, **changes) -> dict[str, str]:
    """The page's form as a browser would post it (inline management forms included)."""
    parser = _FormInputs()
    parser.feed(client.get(page_url).content.decode())
    data = {**parser.data, **changes}
    return {name: value for name, value in data.items() if value is not None}


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def last_audit(action: str) -> AuditLog:
    return AuditLog.objects.filter(action=action).latest("timestamp")


def invite(cast, email="invitee@example.test") -> Invitation:
    invitation, _ = services.invite(cast.org, email=email, role=Role.MEMBER, actor=cast.owner)
    return invitation


# --- every page loads, search works ---------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "query", "expected"),
    [
        ("accounts_user", "olive", 1),
        ("accounts_organization", "acme", 1),
        ("accounts_membership", "globex", 1),
        ("accounts_invitation", "invitee@", 1),
        ("accounts_registrationcode", "staff@", 1),
        ("accounts_apitoken", "ci deploy", 1),
        ("audit_auditlog", "Globex", 1),
    ],
)
def test_changelist_and_change_page_load_and_search(
    cast, staff, staff_client, model, query, expected
):
    invite(cast)
    services.create_api_token(actor=cast.owner, name="ci deploy", scopes=["read"])
    services.create_registration_code(actor=staff)

    assert staff_client.get(url(f"{model}_changelist")).status_code == 200

    response = staff_client.get(url(f"{model}_changelist"), {"q": query})
    assert response.status_code == 200
    assert response.context["cl"].result_count == expected

    obj = response.context["cl"].result_list[0]
    assert staff_client.get(url(f"{model}_change", obj.pk)).status_code == 200


def test_list_filters_work(cast, staff_client):
    invite(cast)
    response = staff_client.get(url("accounts_invitation_changelist"), {"status": "pending"})
    assert response.context["cl"].result_count == 1
    response = staff_client.get(url("accounts_invitation_changelist"), {"status": "revoked"})
    assert response.context["cl"].result_count == 0
    response = staff_client.get(url("audit_auditlog_changelist"), {"action": "member.add"})
    assert response.context["cl"].result_count == 3  # admin, member, viewer joined Acme
    response = staff_client.get(url("accounts_user_changelist"), {"is_staff__exact": "1"})
    assert [u.email for u in response.context["cl"].result_list] == ["staff@example.test"]


@pytest.mark.parametrize(
    "model",
    [
        "accounts_user",
        "accounts_organization",
        "accounts_membership",
        "accounts_invitation",
        "accounts_apitoken",
        "audit_auditlog",
    ],
)
def test_changelist_queries_do_not_grow_with_rows(cast, staff_client, model):
    def grow(n):
        for i in range(n):
            user = make_user()
            services.create_api_token(actor=user, name=f"t{i}", scopes=["read"])
            invite(cast, email=f"grow{i}-{user.pk}@example.test")

    grow(1)
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(url(f"{model}_changelist")).status_code == 200
    grow(4)
    with CaptureQueriesContext(connection) as many:
        assert staff_client.get(url(f"{model}_changelist")).status_code == 200
    assert len(many) == len(few)


def test_organization_list_shows_member_count(cast, staff_client):
    response = staff_client.get(url("accounts_organization_changelist"), {"q": "acme"})
    [org] = response.context["cl"].result_list
    assert org.member_count == 4
    assert '<td class="field-member_count">4</td>' in response.content.decode()


# --- users ----------------------------------------------------------------------------------


def test_adding_a_user_goes_through_the_service(staff, staff_client):
    response = staff_client.post(
        url("accounts_user_add"),
        {
            "email": "New.Person@Example.test",
            "display_name": "New Person",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
        follow=True,
    )

    assert response.status_code == 200
    user = User.objects.get(email__iexact="new.person@example.test")
    assert user.check_password(NEW_PASSWORD)
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER and membership.organization.is_personal
    entry = last_audit("user.create")
    assert entry.actor == staff
    assert entry.target_id == str(user.pk)
    assert entry.changes["personal_organization"] == membership.organization.slug
    assert NEW_PASSWORD not in str(entry.changes)
    # The admin's own history points at the row the service created.
    assert LogEntry.objects.get(object_id=str(user.pk)).is_addition()
    assert response.redirect_chain[-1][0] == url("accounts_user_change", user.pk)


def test_adding_a_user_with_mismatched_passwords_is_a_form_error(staff_client):
    response = staff_client.post(
        url("accounts_user_add"),
        {
            "email": "new@example.test",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD + "x",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["password2"]
    assert not User.objects.filter(email="new@example.test").exists()


def test_adding_a_user_with_a_taken_email_is_a_form_error(cast, staff_client):
    response = staff_client.post(
        url("accounts_user_add"),
        {"email": "OWNER@example.test", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert User.objects.filter(email__iexact="owner@example.test").count() == 1


def test_changing_a_user_is_audited_with_before_and_after(cast, staff, staff_client):
    member = cast.member
    change_url = url("accounts_user_change", member.pk)
    data = form_data(staff_client, change_url, display_name="Mia Member", is_staff="on")
    assert data["memberships-TOTAL_FORMS"] == "2"  # the read-only inline is submitted too

    response = staff_client.post(change_url, data, follow=True)

    assert response.status_code == 200
    assert any("was changed successfully" in m for m in messages_of(response))
    member.refresh_from_db()
    assert member.display_name == "Mia Member" and member.is_staff
    entry = last_audit("user.update")
    assert entry.actor == staff
    assert entry.target_id == str(member.pk)
    assert entry.changes == {
        "before": {"display_name": "", "is_staff": False},
        "after": {"display_name": "Mia Member", "is_staff": True},
    }


def test_user_change_page_links_to_the_password_form(cast, staff_client):
    response = staff_client.get(url("accounts_user_change", cast.member.pk))
    assert 'href="../password/"' in response.content.decode()


def test_password_change_goes_through_the_service(cast, staff, staff_client):
    password_url = url("auth_user_password_change", cast.member.pk)
    assert staff_client.get(password_url).status_code == 200

    response = staff_client.post(
        password_url,
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "set-password": "1"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == url("accounts_user_change", cast.member.pk)
    cast.member.refresh_from_db()
    assert cast.member.check_password(NEW_PASSWORD)
    entry = last_audit("user.update")
    assert entry.actor == staff
    assert entry.changes == {"changed": ["password"]}  # that it changed, never the value


def test_disabling_password_sign_in_is_refused(cast, staff_client):
    response = staff_client.post(
        url("auth_user_password_change", cast.member.pk),
        {"password1": "", "password2": "", "unset-password": "1"},
        follow=True,
    )
    assert any("cannot be disabled" in m for m in messages_of(response))
    cast.member.refresh_from_db()
    assert cast.member.check_password(PASSWORD)


def test_password_change_refuses_weak_password(cast, staff_client):
    response = staff_client.post(
        url("auth_user_password_change", cast.member.pk),
        {"password1": "12345678", "password2": "12345678"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors
    cast.member.refresh_from_db()
    assert cast.member.check_password(PASSWORD)


def test_users_cannot_be_deleted_only_deactivated(cast, staff, staff_client):
    assert staff_client.get(url("accounts_user_delete", cast.member.pk)).status_code == 403

    response = staff_client.post(
        url("accounts_user_changelist"),
        {"action": "deactivate_users", "_selected_action": [cast.member.pk, staff.pk]},
        follow=True,
    )

    cast.member.refresh_from_db()
    staff.refresh_from_db()
    assert not cast.member.is_active
    assert staff.is_active  # never yourself
    assert "Deactivated 1 user(s)." in messages_of(response)
    entry = last_audit("user.update")
    assert entry.actor == staff
    assert entry.changes == {"before": {"is_active": True}, "after": {"is_active": False}}


# --- organizations --------------------------------------------------------------------------


def test_adding_and_changing_an_organization_goes_through_services(staff, staff_client):
    response = staff_client.post(
        url("accounts_organization_add"), {"name": "Initech", "slug": ""}, follow=True
    )
    assert response.status_code == 200
    org = Organization.objects.get(name="Initech")
    assert org.slug == "initech"
    assert Membership.objects.get(organization=org).user == staff
    assert last_audit("organization.create").actor == staff

    change_url = url("accounts_organization_change", org.pk)
    data = form_data(staff_client, change_url, name="Initech Ltd", is_active=None)  # unticked
    staff_client.post(change_url, data)

    org.refresh_from_db()
    assert org.name == "Initech Ltd" and not org.is_active
    assert last_audit("organization.update").changes["after"] == {"name": "Initech Ltd"}
    assert last_audit("organization.delete").actor == staff


def test_organization_service_refusal_is_an_error_not_a_success(cast, staff_client):
    change_url = url("accounts_organization_change", cast.org.pk)
    data = form_data(staff_client, change_url, slug="Acme")
    response = staff_client.post(change_url, data, follow=True)
    texts = messages_of(response)
    assert any("lowercase" in m for m in texts)
    assert not any("successfully" in m for m in texts)
    cast.org.refresh_from_db()
    assert cast.org.slug == "acme"


def test_organizations_cannot_be_deleted_only_deactivated(cast, staff, staff_client):
    assert staff_client.get(url("accounts_organization_delete", cast.org.pk)).status_code == 403
    staff_client.post(
        url("accounts_organization_changelist"),
        {"action": "deactivate_organizations", "_selected_action": [cast.org.pk]},
    )
    cast.org.refresh_from_db()
    assert not cast.org.is_active
    assert last_audit("organization.delete").actor == staff


# --- memberships ----------------------------------------------------------------------------


def owner_membership(cast) -> Membership:
    return Membership.objects.get(user=cast.owner, organization=cast.org)


def test_demoting_the_last_owner_is_refused_with_an_error(cast, staff_client):
    membership = owner_membership(cast)
    audit_rows = AuditLog.objects.count()
    history = LogEntry.objects.count()

    change_url = url("accounts_membership_change", membership.pk)
    data = form_data(staff_client, change_url, role=Role.ADMIN)
    response = staff_client.post(change_url, data, follow=True)

    assert response.status_code == 200
    texts = messages_of(response)
    assert any("at least one owner" in m for m in texts)
    assert not any("successfully" in m for m in texts)
    membership.refresh_from_db()
    assert membership.role == Role.OWNER
    assert AuditLog.objects.count() == audit_rows
    assert LogEntry.objects.count() == history  # the admin history does not claim a change


def test_removing_the_last_owner_is_refused_with_an_error(cast, staff_client):
    membership = owner_membership(cast)
    response = staff_client.post(
        url("accounts_membership_delete", membership.pk), {"post": "yes"}, follow=True
    )
    texts = messages_of(response)
    assert any("at least one owner" in m for m in texts)
    assert not any("successfully" in m for m in texts)
    assert Membership.objects.filter(pk=membership.pk).exists()
    assert not LogEntry.objects.exists()


def test_removing_the_last_owner_by_action_is_refused(cast, staff_client):
    membership = owner_membership(cast)
    viewer = Membership.objects.get(user=cast.viewer, organization=cast.org)
    response = staff_client.post(
        url("accounts_membership_changelist"),
        {"action": "remove_members", "_selected_action": [membership.pk, viewer.pk]},
        follow=True,
    )
    texts = messages_of(response)
    assert any("at least one owner" in m for m in texts)
    assert "Removed 1 member(s)." in texts
    assert Membership.objects.filter(pk=membership.pk).exists()
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    assert last_audit("member.remove").target_label == cast.viewer.email


def test_membership_changes_go_through_services(cast, staff, staff_client):
    viewer = Membership.objects.get(user=cast.viewer, organization=cast.org)
    response = staff_client.post(
        url("accounts_membership_change", viewer.pk), {"role": Role.MEMBER}, follow=True
    )
    assert any("was changed successfully" in m for m in messages_of(response))
    viewer.refresh_from_db()
    assert viewer.role == Role.MEMBER
    entry = last_audit("member.update")
    assert entry.actor == staff
    assert entry.changes == {"before": {"role": "viewer"}, "after": {"role": "member"}}

    staff_client.post(
        url("accounts_membership_add"),
        {"user": cast.outsider.pk, "organization": cast.org.pk, "role": Role.VIEWER},
    )
    added = Membership.objects.get(user=cast.outsider, organization=cast.org)
    assert added.role == Role.VIEWER
    assert last_audit("member.add").actor == staff

    staff_client.post(url("accounts_membership_delete", added.pk), {"post": "yes"})
    assert not Membership.objects.filter(pk=added.pk).exists()
    assert last_audit("member.remove").actor == staff


# --- invitations, tokens, registration codes -------------------------------------------------


def test_invitations_are_read_only_and_revoked_through_the_service(cast, staff, staff_client):
    invitation = invite(cast)
    page = staff_client.get(url("accounts_invitation_change", invitation.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert invitation.code_hash not in page.content.decode()
    assert staff_client.get(url("accounts_invitation_add")).status_code == 403

    staff_client.post(
        url("accounts_invitation_changelist"),
        {"action": "revoke_invitations", "_selected_action": [invitation.pk]},
    )

    invitation.refresh_from_db()
    assert invitation.status == "revoked"
    assert last_audit("invitation.revoke").actor == staff


def test_token_pages_never_show_the_key_hash(cast, staff_client):
    raw = make_token(cast.owner)
    token = ApiToken.objects.get(user=cast.owner)

    for page_url in (
        url("accounts_apitoken_changelist"),
        url("accounts_apitoken_change", token.pk),
    ):
        html = staff_client.get(page_url).content.decode()
        assert token.prefix in html  # the page really shows the token
        assert token.key_hash not in html
        assert raw not in html
    assert staff_client.get(url("accounts_apitoken_add")).status_code == 403


def test_revoking_tokens_goes_through_the_service(cast, staff, staff_client):
    make_token(cast.owner)
    token = ApiToken.objects.get(user=cast.owner)

    response = staff_client.post(
        url("accounts_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
        follow=True,
    )

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "Revoked 1 token(s)." in messages_of(response)
    entry = last_audit("token.revoke")
    assert entry.actor == staff
    assert entry.target_id == str(token.pk)


def test_generating_a_registration_code_shows_it_once_and_stores_the_hash(staff, staff_client):
    response = staff_client.post(url("accounts_registrationcode_add"), {}, follow=True)

    assert response.status_code == 200
    [shown] = [m for m in messages_of(response) if "registration code is" in m]
    code = re.search(r"registration code is ([A-Z0-9]{8})\b", shown).group(1)
    stored = RegistrationCode.objects.get(created_by=staff)
    assert stored.code_hash == creds.keyed_hash(code)
    assert response.content.decode().count(code) == 1
    assert last_audit("registration_code.create").actor == staff

    again = staff_client.get(url("accounts_registrationcode_changelist")).content.decode()
    assert code not in again
    assert stored.code_hash not in again
    page = staff_client.get(url("accounts_registrationcode_change", stored.pk)).content.decode()
    assert code not in page and stored.code_hash not in page

    # The code works for signing up, once.
    user = services.register_with_code(code=code, email="fresh@example.test", password=PASSWORD)
    assert user.pk is not None


# --- audit log ------------------------------------------------------------------------------


def test_audit_log_is_read_only(cast, staff_client):
    entry = AuditLog.objects.first()
    change_url = url("audit_auditlog_change", entry.pk)

    page = staff_client.get(change_url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in page.content.decode()
    assert "<pre>" in page.content.decode()  # changes, pretty-printed

    assert staff_client.post(change_url, {"action": "tampered"}).status_code == 403
    assert staff_client.get(url("audit_auditlog_delete", entry.pk)).status_code == 403
    assert (
        staff_client.post(url("audit_auditlog_delete", entry.pk), {"post": "yes"}).status_code
        == 403
    )
    assert staff_client.get(url("audit_auditlog_add")).status_code == 403

    changelist = staff_client.get(url("audit_auditlog_changelist")).content.decode()
    assert 'name="action"' not in changelist  # no bulk actions, so no bulk delete
    entry.refresh_from_db()
    assert entry.action != "tampered"


# --- sign-in --------------------------------------------------------------------------------


def test_admin_login_is_the_one_sign_in_page_with_its_throttle(staff):
    """The admin has no sign-in of its own (that would skip the second step): its login URL
    sends to /login/ and back, where the failure limit holds."""
    client = Client()
    response = client.get(url("login") + "?next=/admin/hosting/site/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=%2Fadmin%2Fhosting%2Fsite%2F"
    for _ in range(5):
        response = client.post("/login/", {"username": staff.email, "password": "wrong"})
        assert response.status_code == 200
        assert BLOCKED_MESSAGE not in response.content.decode()

    response = client.post("/login/", {"username": staff.email, "password": PASSWORD})
    assert response.status_code == 200
    assert BLOCKED_MESSAGE in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_admin_sign_in_lands_on_the_admin(staff):
    client = Client()
    response = client.post(
        "/login/?next=/admin/", {"username": staff.email, "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.session["_auth_user_id"] == str(staff.pk)
    assert client.get("/admin/").status_code == 200


def test_admin_site_header(staff_client):
    assert "hostpanel" in staff_client.get(url("index")).content.decode()


def test_long_display_name_gives_a_valid_personal_organization(staff_client):
    staff_client.post(
        url("accounts_user_add"),
        {
            "email": "long@example.test",
            "display_name": "N" * 120,
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )
    org = Membership.objects.get(user__email="long@example.test").organization
    org.full_clean()
