"""Tenant pages for sites. They render a shell; the data comes from the REST API."""

from urllib.parse import urlencode, urlsplit

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render

from accounts.models import Organization
from hosting import proxy, services
from hosting.models import Site


def _organization(request, org_slug: str) -> Organization:
    org = Organization.objects.for_user(request.user).filter(slug=org_slug).first()
    if org is None:
        raise Http404
    return org


@login_required
def site_list(request, org_slug: str):
    org = _organization(request, org_slug)
    return render(request, "hosting/site_list.html", {"org": org})


@login_required
def site_detail(request, org_slug: str, site_slug: str):
    org = _organization(request, org_slug)
    site = (
        Site.objects.for_user(request.user).alive().filter(organization=org, slug=site_slug).first()
    )
    if site is None:
        raise Http404
    return render(request, "hosting/site_detail.html", {"org": org, "site": site})


@login_required
def visit_private_site(request, site_id):
    """Where a private site sends a visitor who has no cookie for it: a member signed in
    here is sent back with a one-time pass, which the site's forward_auth swaps for a
    cookie on its own host. `next` must be an address on one of the site's names."""
    site = (
        Site.objects.for_user(request.user)
        .alive()
        .filter(pk=site_id)
        .select_related("organization", "host")
        .prefetch_related("domains")
        .first()
    )
    if site is None:
        raise Http404
    target = _address_on(site, request.GET.get("next", "")) or site.url
    if target is None:
        raise Http404  # no proxy routes it
    if not site.is_private:
        return HttpResponseRedirect(target)
    token = services.issue_visit_pass(site, request.user)
    joiner = "&" if urlsplit(target).query else "?"
    return HttpResponseRedirect(f"{target}{joiner}{urlencode({services.VISIT_PASS_PARAM: token})}")


def _address_on(site: Site, address: str) -> str | None:
    parts = urlsplit(address)
    names = proxy.names_of(site)
    if parts.scheme not in ("http", "https") or parts.hostname not in (
        *names.plain,
        *names.tls,
    ):
        return None
    return address.split("#", 1)[0]
