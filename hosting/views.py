"""The panel page a private site sends its visitors to (hosting/api/edge.py has the rest)."""

from urllib.parse import urlencode, urlsplit

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect

from hosting import proxy, services
from hosting.models import Site


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
