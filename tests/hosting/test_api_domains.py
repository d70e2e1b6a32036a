"""`.../sites/{site}/domains/`: validation, platform-wide uniqueness, one primary per site,
and ownership verification through a TXT record (resolver injected: no real DNS traffic)."""

from __future__ import annotations

import dns.resolver
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Role
from audit.models import AuditLog
from hosting import services
from hosting.models import Domain
from tests.api_mixin import ApiEndpointMixin, assert_error, assert_field_errors
from tests.conftest import client_for
from tests.hosting.factories import make_domain, make_site, site_url, the_site, unique


@pytest.fixture(autouse=True)
def _no_real_dns(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried a real DNS lookup")

    monkeypatch.setattr(dns.resolver, "resolve", refuse)
    monkeypatch.setattr("hosting.api.views.resolve_txt", refuse)


def domains_url(org) -> str:
    return site_url(org, part="domains")


def domain_url(org, domain: Domain, action: str = "") -> str:
    return f"{domains_url(org)}{domain.pk}/{action + '/' if action else ''}"


def add(client, org, hostname: str, **extra):
    return client.post(domains_url(org), {"hostname": hostname, **extra}, format="json")


def primaries(site) -> list[str]:
    return list(site.domains.filter(is_primary=True).values_list("hostname", flat=True))


class TestDomainApi(ApiEndpointMixin):
    audit_actions = {"create": "domain.add", "update": "domain.update", "delete": "domain.remove"}
    min_roles = {
        "read": Role.VIEWER,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "delete": Role.ADMIN,
    }
    max_list_queries = 5  # session, user, organization, site, page (no count: one page)

    @pytest.fixture(autouse=True)
    def _sites(self, cast):
        """Both organizations have a site `web`, so a foreign domain's URL names a real site."""
        the_site(cast.org)
        the_site(cast.other_org)

    def list_url(self, cast):
        return domains_url(cast.org)

    def detail_url(self, cast, obj):
        return domain_url(cast.org, obj)

    def make_object(self, cast):
        return make_domain(the_site(cast.org))

    def create_data(self, cast):
        return {"hostname": f"{unique('new')}.example.com", "is_cloudflare": True}

    def update_data(self, cast):
        return {"ssl_enabled": False}


# --- hostnames -------------------------------------------------------------------------------


def test_hostname_is_normalised_to_lowercase(cast):
    the_site(cast.org)
    response = add(client_for(cast.admin), cast.org, "  Shop.Example.COM. ")
    assert response.status_code == 201, response.content
    assert response.json()["hostname"] == "shop.example.com"
    assert response.json()["txt_record_name"] == "_hostpanel.shop.example.com"
    assert Domain.objects.get().hostname == "shop.example.com"


@pytest.mark.parametrize(
    "hostname",
    [
        "",
        "localhost",
        "not a host.com",
        "-leading.example.com",
        "trailing-.example.com",
        "under_score.example.com",
        "double..dot.com",
        "http://example.com",
        "example.com/path",
        "example.123",
        f"{'a' * 64}.example.com",
    ],
)
def test_invalid_hostname_is_400(cast, hostname):
    the_site(cast.org)
    response = add(client_for(cast.admin), cast.org, hostname)
    assert "hostname" in assert_field_errors(response)
    assert not Domain.objects.exists()


def test_hostname_is_unique_across_the_platform_case_insensitively(cast):
    make_domain(the_site(cast.org), "example.com")
    the_site(cast.other_org)

    response = add(client_for(cast.other_owner), cast.other_org, "EXAMPLE.com")

    body = assert_error(response, 400, "invalid")
    assert "already in use" in body["detail"]
    assert Domain.objects.count() == 1
    assert Domain.objects.get().organization == cast.org


def test_duplicate_hostname_error_is_reported_on_the_hostname_field(cast):
    """'Errors are JSON with a message per field': the field at fault is `hostname`."""
    make_domain(the_site(cast.org), "example.com")
    the_site(cast.other_org)
    fields = assert_field_errors(add(client_for(cast.other_owner), cast.other_org, "example.com"))
    assert "hostname" in fields, fields
    assert "__all__" not in fields, fields


def test_same_hostname_twice_on_one_site_is_400(cast):
    site = the_site(cast.org)
    make_domain(site, "example.com")
    assert add(client_for(cast.admin), cast.org, "Example.Com").status_code == 400
    assert site.domains.count() == 1


def test_database_refuses_case_variants_too(cast):
    """The constraint itself is case-insensitive (on SQLite and PostgreSQL alike)."""
    site = the_site(cast.org)
    make_domain(site, "example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Domain.objects.create(
            organization=cast.org, site=site, hostname="EXAMPLE.COM", verification_token="x"
        )


@pytest.mark.parametrize(
    "hostname", ["hp.example.net", "blog-acme.hp.example.net", "Deep.Blog-Acme.HP.example.net"]
)
def test_names_under_the_platform_base_domain_are_refused(cast, settings, hostname):
    settings.HOSTPANEL_BASE_DOMAIN = "hp.example.net"
    the_site(cast.org)
    response = add(client_for(cast.admin), cast.org, hostname)
    fields = assert_field_errors(response)
    assert "hp.example.net" in fields["hostname"][0]
    assert not Domain.objects.exists()


def test_a_name_merely_ending_like_the_base_domain_is_allowed(cast, settings):
    settings.HOSTPANEL_BASE_DOMAIN = "hp.example.net"
    the_site(cast.org)
    response = add(client_for(cast.admin), cast.org, "myhp.example.net")
    assert response.status_code == 201, response.content


def test_hostname_cannot_be_changed(cast):
    domain = make_domain(the_site(cast.org), "example.com")
    response = client_for(cast.admin).patch(
        domain_url(cast.org, domain), {"hostname": "other.example.com"}
    )
    assert "hostname" in assert_field_errors(response)
    domain.refresh_from_db()
    assert domain.hostname == "example.com"


def test_member_cannot_add_a_domain(cast):
    the_site(cast.org)
    assert_error(add(client_for(cast.member), cast.org, "example.com"), 403, "permission_denied")
    assert not Domain.objects.exists()


# --- the primary domain ---------------------------------------------------------------------------


def test_first_domain_becomes_primary_and_later_ones_do_not(cast):
    site = the_site(cast.org)
    admin = client_for(cast.admin)
    first = add(admin, cast.org, "one.example.com")
    second = add(admin, cast.org, "two.example.com")
    assert first.json()["is_primary"] is True
    assert second.json()["is_primary"] is False
    assert primaries(site) == ["one.example.com"]


def test_first_domain_is_primary_even_when_sent_as_not_primary(cast):
    site = the_site(cast.org)
    response = add(client_for(cast.admin), cast.org, "one.example.com", is_primary=False)
    assert response.json()["is_primary"] is True
    assert primaries(site) == ["one.example.com"]


def test_adding_a_primary_domain_unsets_the_old_one(cast):
    site = the_site(cast.org)
    make_domain(site, "one.example.com")
    response = add(client_for(cast.admin), cast.org, "two.example.com", is_primary=True)
    assert response.status_code == 201, response.content
    assert primaries(site) == ["two.example.com"]


def test_making_another_domain_primary_unsets_the_old_one(cast):
    site = the_site(cast.org)
    make_domain(site, "one.example.com")
    two = make_domain(site, "two.example.com")
    make_domain(site, "three.example.com")

    response = client_for(cast.admin).patch(domain_url(cast.org, two), {"is_primary": True})

    assert response.status_code == 200, response.content
    assert response.json()["is_primary"] is True
    assert primaries(site) == ["two.example.com"]
    listed = client_for(cast.viewer).get(domains_url(cast.org), {"is_primary": "true"}).json()
    assert [d["hostname"] for d in listed["results"]] == ["two.example.com"]


def test_unsetting_the_primary_directly_is_400(cast):
    site = the_site(cast.org)
    one = make_domain(site, "one.example.com")
    make_domain(site, "two.example.com")
    response = client_for(cast.admin).patch(domain_url(cast.org, one), {"is_primary": False})
    assert "is_primary" in assert_field_errors(response)
    assert primaries(site) == ["one.example.com"]


def test_removing_the_primary_promotes_another(cast):
    site = the_site(cast.org)
    one = make_domain(site, "one.example.com")
    make_domain(site, "two.example.com")
    make_domain(site, "three.example.com")

    response = client_for(cast.admin).delete(domain_url(cast.org, one))

    assert response.status_code == 204, response.content
    assert len(primaries(site)) == 1
    assert primaries(site) == ["two.example.com"]  # the oldest remaining one


def test_removing_a_domain_that_is_not_primary_keeps_the_primary(cast):
    site = the_site(cast.org)
    make_domain(site, "one.example.com")
    two = make_domain(site, "two.example.com")
    assert client_for(cast.admin).delete(domain_url(cast.org, two)).status_code == 204
    assert primaries(site) == ["one.example.com"]


def test_removing_the_last_domain_leaves_none(cast):
    site = the_site(cast.org)
    only = make_domain(site, "one.example.com")
    assert client_for(cast.admin).delete(domain_url(cast.org, only)).status_code == 204
    assert not site.domains.exists()


def test_removed_hostname_can_be_added_again_elsewhere(cast):
    site = the_site(cast.org)
    domain = make_domain(site, "example.com")
    assert client_for(cast.admin).delete(domain_url(cast.org, domain)).status_code == 204
    the_site(cast.other_org)
    response = add(client_for(cast.other_owner), cast.other_org, "example.com")
    assert response.status_code == 201, response.content


def test_deleting_a_site_releases_its_domains(cast):
    site = make_site(cast.org, name="Blog")
    make_domain(site, "blog.example.com")
    assert client_for(cast.owner).delete(site_url(cast.org, "blog")).status_code == 204
    assert not Domain.objects.exists()
    released = AuditLog.objects.get(action="domain.remove", target_id=str(site.pk))
    assert released.changes["released"] == ["blog.example.com"]
    the_site(cast.other_org)
    assert add(client_for(cast.other_owner), cast.other_org, "blog.example.com").status_code == 201


# --- verification: the service, resolver injected -------------------------------------------------


def test_verify_with_the_token_in_txt_sets_verified_at(cast):
    domain = make_domain(the_site(cast.org), "example.com")
    asked = []

    def resolver(name):
        asked.append(name)
        return ["v=spf1 -all", f'"{domain.verification_token}"']

    verified = services.verify_domain(domain, actor=cast.admin, resolver=resolver)

    assert asked == ["_hostpanel.example.com"]
    assert verified.verified_at is not None
    domain.refresh_from_db()
    assert domain.verified_at is not None
    row = AuditLog.objects.get(action="domain.verify")
    assert (row.actor, row.organization, row.target_id) == (cast.admin, cast.org, str(domain.pk))


@pytest.mark.parametrize("records", [[], ["wrong-token"], ["v=spf1 -all"]])
def test_verify_without_the_token_is_refused(cast, records):
    domain = make_domain(the_site(cast.org), "example.com")
    with pytest.raises(ValidationError) as error:
        services.verify_domain(domain, actor=None, resolver=lambda name: records)
    assert domain.verification_token in str(error.value)
    domain.refresh_from_db()
    assert domain.verified_at is None
    assert not AuditLog.objects.filter(action="domain.verify").exists()


def test_verify_with_a_resolver_that_fails_is_a_validation_error(cast):
    domain = make_domain(the_site(cast.org), "example.com")

    def broken(name):
        raise TimeoutError("resolver timed out")

    with pytest.raises(ValidationError) as error:
        services.verify_domain(domain, actor=None, resolver=broken)
    assert "_hostpanel.example.com" in str(error.value)
    domain.refresh_from_db()
    assert domain.verified_at is None


def test_token_of_another_domain_does_not_verify(cast):
    site = the_site(cast.org)
    one = make_domain(site, "one.example.com")
    two = make_domain(site, "two.example.com")
    assert one.verification_token != two.verification_token
    with pytest.raises(ValidationError):
        services.verify_domain(one, actor=None, resolver=lambda name: [two.verification_token])


# --- verification through the API (hosting.api.views.resolve_txt patched) -------------------------


def test_api_verify_sets_verified_at(cast, monkeypatch):
    domain = make_domain(the_site(cast.org), "example.com")
    asked = []
    monkeypatch.setattr(
        "hosting.api.views.resolve_txt",
        lambda name: asked.append(name) or [domain.verification_token],
    )

    response = client_for(cast.admin).post(domain_url(cast.org, domain, "verify"))

    assert response.status_code == 200, response.content
    assert response.json()["verified_at"] is not None
    assert asked == ["_hostpanel.example.com"]
    listed = client_for(cast.viewer).get(domains_url(cast.org), {"verified": "true"}).json()
    assert [d["hostname"] for d in listed["results"]] == ["example.com"]


def test_api_verify_with_a_wrong_token_is_400(cast, monkeypatch):
    domain = make_domain(the_site(cast.org), "example.com")
    monkeypatch.setattr("hosting.api.views.resolve_txt", lambda name: ["not-the-token"])
    response = client_for(cast.admin).post(domain_url(cast.org, domain, "verify"))
    fields = assert_field_errors(response)
    assert domain.verification_token in fields["hostname"][0]
    domain.refresh_from_db()
    assert domain.verified_at is None


@pytest.mark.parametrize("error", [LookupError("SERVFAIL"), OSError("network unreachable")])
def test_api_verify_when_dns_fails_is_400_not_500(cast, monkeypatch, error):
    domain = make_domain(the_site(cast.org), "example.com")

    def failing(name):
        raise error

    monkeypatch.setattr("hosting.api.views.resolve_txt", failing)
    response = client_for(cast.admin).post(domain_url(cast.org, domain, "verify"))
    fields = assert_field_errors(response)
    assert "_hostpanel.example.com" in fields["hostname"][0]
    domain.refresh_from_db()
    assert domain.verified_at is None


def test_member_cannot_verify(cast, monkeypatch):
    domain = make_domain(the_site(cast.org), "example.com")
    monkeypatch.setattr("hosting.api.views.resolve_txt", lambda n: [domain.verification_token])
    response = client_for(cast.member).post(domain_url(cast.org, domain, "verify"))
    assert_error(response, 403, "permission_denied")
    domain.refresh_from_db()
    assert domain.verified_at is None
