"""Small factory functions. They go through the services, like every real change."""

from __future__ import annotations

import itertools

from accounts import services
from accounts.models import Membership, Organization, Role, User

PASSWORD = "correct horse battery staple 42"
_seq = itertools.count(1)


def make_user(email: str | None = None, *, password: str = PASSWORD, **extra) -> User:
    email = email or f"user{next(_seq)}@example.test"
    return services.create_user(email=email, password=password, **extra)


def make_org(owner: User, name: str | None = None, **extra) -> Organization:
    return services.create_organization(actor=owner, name=name or f"Org {next(_seq)}", **extra)


def add_member(org: Organization, user: User, role: str = Role.MEMBER) -> Membership:
    return services.add_member(org, user, role, actor=None)


def make_token(user: User, scopes=("read", "write"), **extra) -> str:
    _, raw = services.create_api_token(actor=user, name="test", scopes=list(scopes), **extra)
    return raw
