"""Password hashers beyond Django's own."""

from django.contrib.auth.hashers import BCryptPasswordHasher


class LegacyBCryptPasswordHasher(BCryptPasswordHasher):
    """Verifies plain bcrypt hashes imported from the seed systems (`bcrypt$$2b$12$…`).

    Those systems hashed the first 72 bytes of the password (bcrypt's limit); bcrypt 5
    refuses longer input, so we truncate the same way instead of failing.
    """

    algorithm = "bcrypt"

    def verify(self, password: str, encoded: str) -> bool:
        return super().verify(password.encode()[:72].decode(errors="ignore"), encoded)

    def encode(self, password: str, salt: str) -> str:
        return super().encode(password.encode()[:72].decode(errors="ignore"), salt)


def import_bcrypt_hash(raw_hash: str) -> str:
    """Turn a bare `$2b$…` hash from a seed database into a Django password value."""
    if not raw_hash.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("not a bcrypt hash")
    return "bcrypt$" + raw_hash
