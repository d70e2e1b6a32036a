"""Tenant pages for sites. They render a shell; the data comes from the REST API."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from accounts.models import Organization
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
