"""Tenant console pages. Each renders a shell with what the page needs to know (the
organization, the site, the viewer's role and what it allows); the data comes from the
REST API, which does every check again. Outsiders get the 404 page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from accounts.models import Invitation, Organization, TerminalAccess
from accounts.secrets import keyed_hash
from accounts.services import record_password_reset
from console.abilities import abilities
from hosting.models import Site
from hostpanel.api.throttling import RegisterThrottle
from hostpanel.api.viewsets import OrganizationScopedMixin

SITE_SECTIONS = {
    "overview": "Overview",
    "deployments": "Deployments",
    "logs": "Logs",
    "terminal": "Terminal",
    "usage": "Usage",
    "env": "Environment",
    "domains": "Domains",
    "ports": "TCP ports",
    "limits": "Limits",
    "settings": "Settings",
    "webhook": "Git webhook",
    "sharing": "Privacy & sharing",
}
ORG_SECTIONS = {
    "sites": "Sites",
    "members": "Members",
    "audit": "Audit",
    "notifications": "Notifications",
    "settings": "Settings",
}


def _organization(request, org_slug: str) -> Organization:
    """The API's own resolution (the tenant filter, the caller's role, 404 outside)."""
    return OrganizationScopedMixin.resolve_organization(request, org_slug)


def _page(request, template: str, *, org=None, site=None, section: str = "", **data):
    role = getattr(org, "caller_role", None)
    page = {
        "user": {"email": request.user.email},
        "role": role,
        "can": abilities(role) if org is not None else {},
        **data,
    }
    if org is not None:
        page["org"] = {"slug": org.slug, "name": org.name, "personal": org.is_personal}
    if site is not None:
        page["site"] = {"slug": site.slug, "name": site.name, "id": str(site.pk)}
    context = {
        "org": org,
        "site": site,
        "section": section,
        "page_data": page,
        "org_sections": ORG_SECTIONS,
        "site_sections": SITE_SECTIONS,
        "terminal_choices": TerminalAccess.choices,
        "terminal_idle_minutes": max(1, settings.TERMINAL_IDLE_SECONDS // 60),
    }
    return render(request, f"console/{template}.html", context)


@login_required
def home(request):
    return _page(request, "home")


@login_required
def account(request):
    return _page(request, "account")


@login_required
def tokens(request):
    return _page(request, "tokens")


@login_required
def org_sites(request, org_slug: str):
    return _page(request, "org_sites", org=_organization(request, org_slug), section="sites")


@login_required
def org_section(request, org_slug: str, section: str):
    if section not in ORG_SECTIONS or section == "sites":
        raise Http404
    org = _organization(request, org_slug)
    return _page(request, f"org_{section}", org=org, section=section)


@login_required
def site_new(request, org_slug: str):
    return _page(request, "site_new", org=_organization(request, org_slug), section="sites")


@login_required
def site_section(request, org_slug: str, site_slug: str, section: str = "overview"):
    if section not in SITE_SECTIONS:
        raise Http404
    org = _organization(request, org_slug)
    site = Site.objects.alive().filter(organization=org, slug=site_slug).first()
    if site is None:
        raise Http404
    return _page(request, f"site_{section}", org=org, site=site, section=section)


def invitation(request, code: str):
    """The invitation email's link: who invites to what, then sign in or create an account
    with the invitation alone, and accept (through the API)."""
    found = (
        Invitation.objects.pending()
        .filter(code_hash=keyed_hash(code), organization__is_active=True)
        .select_related("organization", "invited_by")
        .first()
    )
    page = {"code": code, "organization": found.organization.slug} if found else None
    context = {"invitation": found, "invitation_page": page}
    return render(request, "console/invitation.html", context, status=200 if found else 404)


class PasswordResetView(auth_views.PasswordResetView):
    """Asks for an email and sends a reset link if an account has it (the page says the
    same either way: no account discovery). Throttled like sign-ups."""

    template_name = "console/password_reset.html"
    email_template_name = "console/password_reset_email.txt"
    subject_template_name = "console/password_reset_subject.txt"

    def post(self, request, *args, **kwargs):
        if not RegisterThrottle().allow_request(request, None):
            form = self.get_form()
            form.add_error(None, "Too many attempts. Try again later.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        # The link goes to the panel's own address, not to whatever Host the request had.
        self.extra_email_context = {"site_url": settings.SITE_URL.rstrip("/")}
        return super().post(request, *args, **kwargs)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "console/password_reset_confirm.html"

    def form_valid(self, form):
        response = super().form_valid(form)
        record_password_reset(form.user)
        return response
