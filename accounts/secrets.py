"""Generation and keyed hashing of the credentials we hand out (tokens, codes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from django.conf import settings

TOKEN_PREFIX = "hp_"  # noqa: S105 (a public marker, not a secret)
REGISTRATION_CODE_ALPHABET = string.ascii_uppercase + string.digits
REGISTRATION_CODE_LENGTH = 8


def keyed_hash(value: str) -> str:
    return hmac.new(settings.TOKEN_HASH_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def hashes_match(value: str, stored_hash: str) -> bool:
    return hmac.compare_digest(keyed_hash(value), stored_hash)


def new_api_token() -> tuple[str, str]:
    """Return (full token, visible prefix). Format: hp_<8 char id>_<secret>."""
    ident = secrets.token_hex(4)
    return f"{TOKEN_PREFIX}{ident}_{secrets.token_urlsafe(32)}", f"{TOKEN_PREFIX}{ident}"


def split_api_token(raw: str) -> str | None:
    """The prefix a presented token claims, or None when it is not shaped like one of ours."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    head, sep, secret = raw[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(head) != 8 or not secret:
        return None
    return TOKEN_PREFIX + head


def new_invitation_code() -> str:
    return secrets.token_urlsafe(32)


def new_registration_code() -> str:
    return "".join(
        secrets.choice(REGISTRATION_CODE_ALPHABET) for _ in range(REGISTRATION_CODE_LENGTH)
    )
