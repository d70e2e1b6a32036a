"""Shells into site containers: single-use tickets bound to one user, one container and a few
seconds, and the audit of each session (start, end, bytes both ways). The socket itself is
hosting/terminal_socket.py; this module is what it and the API ask."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import secrets as creds
from accounts.models import TERMINAL_ROLE, Organization, TerminalAccess, User, role_at_least
from accounts.services import role_of
from audit import actions
from audit.services import record
from hosting.models import ObservedState, Site, TerminalTicket
from hosting.runtime import current_container


class TicketRefused(Exception):
    """The socket's ticket cannot open a shell; `code` is the WebSocket close code."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def access_problem(org: Organization, user: User) -> str:
    """'' when the user may open terminals in the organization, else why not."""
    if org.terminal_access == TerminalAccess.OFF or not org.is_active:
        return f"Terminals are turned off in {org.slug}."
    needed = TERMINAL_ROLE[TerminalAccess(org.terminal_access)]
    role = role_of(user, org)
    if not user.is_active or not role_at_least(role, needed):
        return f"Terminals here need the {needed} role; you are {role or 'not a member'}."
    return ""


def issue_ticket(site: Site, *, user: User) -> tuple[TerminalTicket, str]:
    """A ticket for a shell in the site's serving container; the raw value is shown once."""
    problem = access_problem(site.organization, user)
    if problem:
        raise PermissionDenied(problem)
    container = current_container(site)
    if container is None or container.state != ObservedState.RUNNING:
        raise ValidationError({"site": "The site has no running container to open a shell in."})
    raw = secrets.token_urlsafe(32)
    ticket = TerminalTicket.objects.create(
        organization=site.organization,
        site=site,
        user=user,
        host=container.host,
        docker_id=container.docker_id,
        container_name=container.name,
        token_hash=creds.keyed_hash(raw),
        expires_at=timezone.now() + timedelta(seconds=settings.TERMINAL_TICKET_SECONDS),
    )
    return ticket, raw


def spend_ticket(raw: str, *, user_id) -> TerminalTicket:
    """Spend a ticket for the signed-in user of the socket: once, before it expires, by its own
    user, while they may still open terminals and the container still serves the site; then
    the session's start is audited. TicketRefused otherwise."""
    if user_id is None:
        raise TicketRefused(4401, "Sign in to the panel first.")
    now = timezone.now()
    digest = creds.keyed_hash(raw or "")
    # Spent first, in a transaction of its own: a refused ticket stays spent (burnt).
    spent = TerminalTicket.objects.filter(
        token_hash=digest, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if spent != 1:
        raise TicketRefused(4404, "This ticket is unknown, used or expired.")
    ticket = TerminalTicket.objects.select_related("site", "organization", "user", "host").get(
        token_hash=digest
    )
    if ticket.user_id != user_id:
        raise TicketRefused(4403, "This ticket belongs to someone else.")
    problem = access_problem(ticket.organization, ticket.user)
    if problem:
        raise TicketRefused(4403, problem)
    container = current_container(ticket.site)
    if ticket.site.is_deleted or container is None or container.docker_id != ticket.docker_id:
        raise TicketRefused(4409, "The container this ticket was for no longer serves.")
    with transaction.atomic():
        record(
            actions.TERMINAL_OPEN,
            actor=ticket.user,
            organization=ticket.organization,
            target=ticket.site,
            changes={"container": ticket.container_name, "ticket": str(ticket.pk)},
        )
    return ticket


def still_allowed(ticket: TerminalTicket) -> str:
    """'' while the ticket's user may go on (read fresh: a role taken away or terminals
    turned off end an open session at its next recheck), else why not."""
    org = Organization.objects.get(pk=ticket.organization_id)
    user = User.objects.get(pk=ticket.user_id)
    problem = access_problem(org, user)
    if problem:
        return problem
    container = current_container(Site.objects.get(pk=ticket.site_id))
    if container is None or container.docker_id != ticket.docker_id:
        return "The container this terminal was in no longer serves the site."
    return ""


@dataclass
class SessionEnd:
    bytes_in: int  # typed by the user
    bytes_out: int  # printed by the shell
    seconds: float
    reason: str


def record_end(ticket: TerminalTicket, end: SessionEnd) -> None:
    with transaction.atomic():
        record(
            actions.TERMINAL_CLOSE,
            actor=ticket.user,
            organization=ticket.organization,
            target=ticket.site,
            changes={
                "container": ticket.container_name,
                "ticket": str(ticket.pk),
                "bytes_in": end.bytes_in,
                "bytes_out": end.bytes_out,
                "seconds": round(end.seconds, 1),
                "reason": end.reason,
            },
        )


def purge_tickets(now=None) -> int:
    """Tickets are worth nothing a minute after they expire."""
    cutoff = (now or timezone.now()) - timedelta(minutes=1)
    deleted, _ = TerminalTicket.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
