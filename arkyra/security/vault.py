"""Authenticated encryption for stored secrets (AES-256-GCM), with key ids and rotation.

``ARKYRA_ENCRYPTION_KEYS`` holds ``id:key`` pairs (comma-separated, key = 32 bytes base64url);
the first key encrypts, every key decrypts. Each value gets a fresh 96-bit nonce, and the caller's
context (e.g. the row id) is bound in as associated data, so a ciphertext copied onto another row
fails to authenticate instead of decrypting to someone else's secret.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from arkyra.config import Settings
from arkyra.errors import ConfigError, DecryptionFailed

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(frozen=True)
class Sealed:
    """A ciphertext and the id of the key that sealed it (stored side by side)."""

    key_id: str
    blob: bytes


def _decode_key(key_id: str, encoded: str) -> bytes:
    padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
    try:
        key = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        raise ConfigError(f"ARKYRA_ENCRYPTION_KEYS: key {key_id!r} is not base64url") from None
    if len(key) != 32:
        raise ConfigError(
            f"ARKYRA_ENCRYPTION_KEYS: key {key_id!r} must be 32 bytes, got {len(key)}; "
            "create one with `arkyra keys generate`"
        )
    return key


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse ``id:key,id:key`` into ``[(id, key bytes)]``, first one primary."""
    keys: list[tuple[str, bytes]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key_id, sep, encoded = part.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise ConfigError(
                "ARKYRA_ENCRYPTION_KEYS must look like 'id:base64key[,id:base64key]' "
                "(id: letters, digits, '-', '_', '.')"
            )
        if any(existing == key_id for existing, _ in keys):
            raise ConfigError(f"ARKYRA_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
        keys.append((key_id, _decode_key(key_id, encoded)))
    if not keys:
        raise ConfigError("ARKYRA_ENCRYPTION_KEYS is empty")
    return keys


class Vault:
    """Seal and open secrets with the configured keys."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.primary_key_id = keys[0][0]

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        return cls(parse_keys(settings.require("encryption_keys")))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encrypt(self, plaintext: bytes, *, context: bytes) -> Sealed:
        """Seal under the primary key with a fresh nonce; ``context`` must match on decrypt."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.primary_key_id].encrypt(nonce, plaintext, context)
        return Sealed(self.primary_key_id, FORMAT_VERSION + nonce + sealed)

    def decrypt(self, sealed: Sealed, *, context: bytes) -> bytes:
        """Open a sealed value; any failure is ``DecryptionFailed`` (never the key or plaintext)."""
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise DecryptionFailed(f"key {sealed.key_id!r} is not among ARKYRA_ENCRYPTION_KEYS")
        blob = sealed.blob
        if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != FORMAT_VERSION:
            raise DecryptionFailed("ciphertext is truncated or in an unknown format")
        try:
            return cipher.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], context)
        except InvalidTag:
            raise DecryptionFailed("ciphertext did not authenticate") from None

    def needs_rotation(self, sealed: Sealed) -> bool:
        return sealed.key_id != self.primary_key_id
