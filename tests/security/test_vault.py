"""The vault: authenticated encryption, fresh nonces, bound context, key ids."""

from __future__ import annotations

import pytest

from arkyra.config import generate_encryption_key
from arkyra.errors import ConfigError, DecryptionFailed
from arkyra.security.vault import Sealed, Vault, parse_keys

K1 = "k1:" + generate_encryption_key()
K2 = "k2:" + generate_encryption_key()


def test_round_trip_with_key_id_and_fresh_nonce() -> None:
    vault = Vault(parse_keys(K1))
    a = vault.encrypt(b"sk-secret", context=b"row-1")
    b = vault.encrypt(b"sk-secret", context=b"row-1")
    assert a.key_id == "k1"
    assert a.blob != b.blob  # a fresh nonce every time
    assert b"sk-secret" not in a.blob
    assert vault.decrypt(a, context=b"row-1") == b"sk-secret"


def test_context_is_bound() -> None:
    vault = Vault(parse_keys(K1))
    sealed = vault.encrypt(b"sk-secret", context=b"row-1")
    with pytest.raises(DecryptionFailed):
        vault.decrypt(sealed, context=b"row-2")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_any_tampered_byte_fails(position: int) -> None:
    vault = Vault(parse_keys(K1))
    sealed = vault.encrypt(b"sk-secret", context=b"c")
    blob = bytearray(sealed.blob)
    blob[position] ^= 0x01
    with pytest.raises(DecryptionFailed):
        vault.decrypt(Sealed(sealed.key_id, bytes(blob)), context=b"c")


def test_truncated_and_unknown_key() -> None:
    vault = Vault(parse_keys(K1))
    sealed = vault.encrypt(b"x", context=b"c")
    with pytest.raises(DecryptionFailed):
        vault.decrypt(Sealed("k1", sealed.blob[:10]), context=b"c")
    with pytest.raises(DecryptionFailed, match="k9"):
        vault.decrypt(Sealed("k9", sealed.blob), context=b"c")


def test_first_key_encrypts_all_decrypt() -> None:
    old = Vault(parse_keys(K1))
    sealed_old = old.encrypt(b"v", context=b"c")
    both = Vault(parse_keys(f"{K2},{K1}"))
    assert both.primary_key_id == "k2"
    assert both.decrypt(sealed_old, context=b"c") == b"v"
    assert both.needs_rotation(sealed_old)
    assert both.encrypt(b"v", context=b"c").key_id == "k2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("nokey", "id:base64key"),
        ("k1:!!!notbase64", "base64url"),
        ("k1:" + "A" * 10, "32 bytes"),
        (f"{K1},{K1}", "twice"),
        ("bad id:" + "A" * 43, "id:base64key"),
    ],
)
def test_bad_key_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_keys(spec)
