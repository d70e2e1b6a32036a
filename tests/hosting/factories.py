"""Helpers for hosting tests: hosts, sites, templates, domains and env vars, made through the
services (like every real change), plus the URLs of the hosting endpoints."""

from __future__ import annotations

import itertools

from accounts.models import Organization, User
from hosting import services
from hosting.models import DockerHost, Domain, EnvironmentVariable, Site, SiteTemplate

# Never contacted: sites made here are created with desired_state="stopped".
UNREACHABLE_ENDPOINT = "unix:///nonexistent.sock"
# An ssh host key of no machine (ssh:// hosts need one pinned).
SSH_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEEaSmLygVyJJbcWIx1qZHgNF+aOL5a152BprJE6aIhV"
SITE_SLUG = "web"  # the one site per organization that nested-endpoint tests hang off
SMALL_LIMITS = {"memory_mb": 64, "cpu_percent": 10}
_seq = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_seq)}"


# --- URLs ---------------------------------------------------------------------------------


def sites_url(org: Organization) -> str:
    return f"/api/v1/organizations/{org.slug}/sites/"


def site_url(org: Organization, slug: str = SITE_SLUG, part: str = "") -> str:
    """`.../sites/{slug}/` or, with part, `.../sites/{slug}/{part}/`."""
    return f"{sites_url(org)}{slug}/{part + '/' if part else ''}"


def quota_url(org: Organization) -> str:
    return f"/api/v1/organizations/{org.slug}/quota/"


# --- rows ---------------------------------------------------------------------------------


def ensure_host(name: str = "local") -> DockerHost:
    """An ONLINE host for placement. Its endpoint does not exist: only stopped sites use it."""
    host = DockerHost.objects.filter(name=name).first()
    return host or services.create_host(actor=None, name=name, endpoint=UNREACHABLE_ENDPOINT)


def make_site(
    org: Organization, *, actor: User | None = None, name: str | None = None, **fields
) -> Site:
    """A stopped docker-type site (no engine call) with small limits."""
    ensure_host()
    fields.setdefault("site_type", "docker")
    fields.setdefault("image", "example/app:1")
    fields.setdefault("desired_state", "stopped")
    fields.setdefault("limits", dict(SMALL_LIMITS))
    return services.create_site(org, actor=actor, name=name or unique("Site "), **fields)


def the_site(org: Organization) -> Site:
    """The organization's site `web`, made on first use."""
    site = Site.objects.alive().filter(organization=org, slug=SITE_SLUG).first()
    return site or make_site(org, name="Web", slug=SITE_SLUG)


def make_template(*, actor: User | None = None, **fields) -> SiteTemplate:
    slug = fields.pop("slug", None) or unique("template-")
    fields.setdefault("name", slug.replace("-", " ").title())
    fields.setdefault("site_type", "docker")
    fields.setdefault("image", "example/template:1")
    return services.save_template(SiteTemplate(slug=slug, **fields), actor=actor)


def make_domain(site: Site, hostname: str | None = None, **fields) -> Domain:
    return services.add_domain(
        site, actor=None, hostname=hostname or f"{unique('d')}.example.com", **fields
    )


def make_env(
    site: Site, key: str | None = None, value: str = "value", *, is_secret: bool = False
) -> EnvironmentVariable:
    return services.set_env(
        site, actor=None, key=key or unique("KEY_"), value=value, is_secret=is_secret
    )
