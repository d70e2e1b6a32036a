"""hostpanel.crypto: secret env values under MultiFernet with rotatable keys."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from hostpanel import crypto

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
PLAINTEXTS = ["hunter2", "", "ünïcødé ✓ and spaces", "x" * 10_000, "line\nbreaks\tand=signs"]


@pytest.fixture
def keys(settings):
    """keys(k1, k2, ...) sets ENV_ENCRYPTION_KEYS, newest first."""

    def use(*values: str) -> None:
        settings.ENV_ENCRYPTION_KEYS = list(values)

    return use


@pytest.mark.parametrize("plaintext", PLAINTEXTS)
def test_round_trip(keys, plaintext):
    keys(NEW)
    token = crypto.encrypt(plaintext)
    assert isinstance(token, str)
    assert token != plaintext
    if plaintext:
        assert plaintext not in token
    assert crypto.decrypt(token) == plaintext


def test_each_encryption_is_different(keys):
    keys(NEW)
    assert crypto.encrypt("same") != crypto.encrypt("same")


def test_a_fernet_key_is_used_as_is(keys):
    keys(NEW)
    assert Fernet(NEW.encode()).decrypt(crypto.encrypt("hello").encode()) == b"hello"


def test_tokens_from_the_old_key_decrypt_while_it_is_listed(keys):
    keys(OLD)
    token = crypto.encrypt("secret")
    keys(NEW, OLD)
    assert crypto.decrypt(token) == "secret"


def test_new_values_use_the_newest_key(keys):
    keys(NEW, OLD)
    token = crypto.encrypt("secret")
    keys(NEW)
    assert crypto.decrypt(token) == "secret"
    keys(OLD)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)


def test_rotate_re_encrypts_with_the_newest_key(keys):
    keys(OLD)
    token = crypto.encrypt("secret")
    keys(NEW, OLD)
    rotated = crypto.rotate(token)
    assert rotated != token
    keys(NEW)  # the old key is dropped after rotation
    assert crypto.decrypt(rotated) == "secret"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)


def test_rotate_of_a_token_no_key_reads_fails(keys):
    keys(OLD)
    token = crypto.encrypt("secret")
    keys(NEW)
    with pytest.raises(crypto.DecryptionError):
        crypto.rotate(token)


@pytest.mark.parametrize(
    "passphrase",
    [
        "correct horse battery staple",
        "short",
        "abcd",  # valid base64, but not 32 bytes once decoded
        "ünïcødé passphrase",
        "a" * 200,
    ],
)
def test_passphrase_keys_work(keys, passphrase):
    keys(passphrase)
    token = crypto.encrypt("secret")
    assert crypto.decrypt(token) == "secret"
    crypto._multi.cache_clear()  # a fresh process derives the same key
    assert crypto.decrypt(token) == "secret"


def test_passphrase_and_fernet_keys_mix_for_rotation(keys):
    keys("an old passphrase")
    token = crypto.encrypt("secret")
    keys(NEW, "an old passphrase")
    rotated = crypto.rotate(token)
    keys(NEW)
    assert crypto.decrypt(rotated) == "secret"


def test_different_passphrases_are_different_keys(keys):
    keys("passphrase one")
    token = crypto.encrypt("secret")
    keys("passphrase two")
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)


def test_wrong_key_is_a_decryption_error(keys):
    keys(OLD)
    token = crypto.encrypt("secret")
    keys(NEW)
    with pytest.raises(crypto.DecryptionError) as error:
        crypto.decrypt(token)
    assert "secret" not in str(error.value).replace("secret value", "")
    assert token not in str(error.value)


@pytest.mark.parametrize("garbage", ["", "not-a-token", "gAAAAABthisisnotreal==", "plain text"])
def test_garbage_is_a_decryption_error(keys, garbage):
    keys(NEW)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(garbage)


def test_tampered_token_is_a_decryption_error(keys):
    keys(NEW)
    token = crypto.encrypt("secret")
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(flipped)


def test_decryption_error_maps_to_503():
    assert crypto.DecryptionError.api_status == 503
    assert crypto.DecryptionError.api_code == "secrets_unavailable"
