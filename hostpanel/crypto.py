"""Encryption of secret environment values with rotatable keys (MultiFernet).

Keys come from ENV_ENCRYPTION_KEYS, newest first. A key that is not already a Fernet key
(32 url-safe base64 bytes) is stretched with SHA-256, so any long random string works.
Rotation: prepend a new key, run `manage.py rotate_env_keys`, then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key (a server fault)."""

    api_status = 503
    api_code = "secrets_unavailable"


def _fernet(key: str) -> Fernet:
    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32:
            return Fernet(key.encode())
    except (binascii.Error, ValueError):
        pass
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


@lru_cache(maxsize=4)
def _multi(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(k) for k in keys])


def _current() -> MultiFernet:
    return _multi(tuple(settings.ENV_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("secret value cannot be decrypted with the configured keys") from None


def rotate(token: str) -> str:
    """Re-encrypt with the newest key."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("secret value cannot be decrypted with the configured keys") from None


def decrypting_key(token: str) -> str | None:
    """The configured key that decrypts TOKEN, or None (what a backup's manifest lists)."""
    for key in settings.ENV_ENCRYPTION_KEYS:
        try:
            _fernet(key).decrypt(token.encode())
        except InvalidToken:
            continue
        return key
    return None
