"""Who is acting, from where: captured per request by middleware and read by `record`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RequestContext:
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""
    token_id: str | None = None


_EMPTY = RequestContext()  # frozen, so sharing it as the default is safe
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "audit_request_context",
    default=_EMPTY,
)


def current() -> RequestContext:
    return _current.get()


def set_context(ctx: RequestContext) -> contextvars.Token:
    return _current.set(ctx)


def reset_context(token: contextvars.Token) -> None:
    _current.reset(token)


def set_token(token_id: str | None) -> None:
    """Called by token authentication, which runs after the middleware."""
    _current.set(replace(_current.get(), token_id=token_id))
