"""Password hashers beyond Django's own."""

from django.contrib.auth.hashers import BCryptPasswordHasher


class LegacyBCryptPasswordHasher(BCryptPasswordHasher):
    """Verifies plain bcrypt hashes imported from the seed systems (`bcrypt$$2b$12$…`).

    Those systems hashed the first 72 bytes of the password (bcrypt's limit); bcrypt 5
    refuses longer input, so we truncate the same way instead of failing.
    """

    algorithm = "bcrypt"

    def encode(self, password: str, salt: bytes) -> str:
        # Truncate bytes, not characters: byte 72 may fall inside a multi-byte character.
        data = self._load_library().hashpw(password.encode()[:72], salt)
        return f"{self.algorithm}${data.decode('ascii')}"


def import_bcrypt_hash(raw_hash: str) -> str:
    """Turn a bare `$2b$…` hash from a seed database into a Django password value."""
    if not raw_hash.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("not a bcrypt hash")
    return "bcrypt$" + raw_hash
