"""A small media store: bytes in, a file under a local root out.

Files are content-addressed by default (the key is the SHA-256 of the bytes), so storing the same
audio twice keeps one file and a retried synthesis never leaves duplicates behind. Writes are
atomic (a temp file in the same directory, then ``os.replace``), so a reader never sees half a
file. Only a fixed allow-list of media types is accepted, up to a size limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from arkyra.errors import InvalidInput

if TYPE_CHECKING:
    from arkyra.config import Settings

DEFAULT_MAX_BYTES = 200 * 1024 * 1024

ALLOWED_CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "audio/mpeg",
        "audio/wav",
        "audio/x-wav",
        "audio/flac",
        "audio/ogg",
        "audio/pcm",
        "video/mp4",
        "image/png",
        "image/jpeg",
    }
)

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


class StoredMedia(BaseModel):
    """One stored file: where it is, what it is, and how to check it."""

    key: str
    path: Path
    content_type: str
    size: int
    sha256: str


class MediaStore:
    """Stores media bytes as files under ``root``; see the module docstring for the rules."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = Path(root)
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaStore:
        """The store under ``<home>/media``."""
        return cls(settings.home / "media")

    async def put_bytes(
        self, data: bytes, *, content_type: str, suffix: str, key: str | None = None
    ) -> StoredMedia:
        """Store ``data`` as ``<root>/<key><suffix>``; the key defaults to its SHA-256.

        Raises :class:`~arkyra.errors.InvalidInput` for an empty or oversized payload, a media
        type outside the allow-list, or a key or suffix that is not a plain file name part.
        """
        media_type = self._check(data, content_type)
        suffix = _normalise_suffix(suffix)
        digest = hashlib.sha256(data).hexdigest()
        key = digest if key is None else _check_key(key)
        path = self.root / f"{key}{suffix}"
        await asyncio.to_thread(_write_atomically, path, data, digest)
        return StoredMedia(
            key=key, path=path, content_type=media_type, size=len(data), sha256=digest
        )

    def _check(self, data: bytes, content_type: str) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput("media must be bytes", {"data": "expected bytes"})
        if len(data) == 0:
            raise InvalidInput("media is empty", {"data": "no bytes to store"})
        if len(data) > self.max_bytes:
            raise InvalidInput(
                "media is too large",
                {"data": f"{len(data)} bytes exceeds the limit of {self.max_bytes} bytes"},
            )
        media_type = normalise_content_type(content_type)
        if media_type not in ALLOWED_CONTENT_TYPES:
            allowed = ", ".join(sorted(ALLOWED_CONTENT_TYPES))
            raise InvalidInput(
                f"media type {media_type!r} is not allowed",
                {"content_type": f"must be one of: {allowed}"},
            )
        return media_type


def normalise_content_type(content_type: str) -> str:
    """``'Audio/MPEG; charset=x'`` -> ``'audio/mpeg'``."""
    return content_type.split(";", 1)[0].strip().lower()


def _normalise_suffix(suffix: str) -> str:
    value = suffix.strip().lower()
    value = value if value.startswith(".") else f".{value}"
    if not _SUFFIX.match(value):
        raise InvalidInput("invalid file suffix", {"suffix": "letters and digits only, e.g. .mp3"})
    return value


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise InvalidInput(
            "invalid media key",
            {"key": "1-128 letters, digits, '-' or '_', starting with a letter or digit"},
        )
    return key


def _write_atomically(path: Path, data: bytes, digest: str) -> None:
    """Write via a temp file + ``os.replace``; skip when identical content is already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size == len(data) and _sha256_of(path) == digest:
        return
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()
