"""The media store: content addressing, atomic writes, the size limit and the type allow-list."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from arkyra.config import Settings
from arkyra.errors import InvalidInput
from arkyra.media import MediaStore, StoredMedia

AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"x" * 400


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


async def test_put_bytes_stores_under_the_sha256(store: MediaStore) -> None:
    stored = await store.put_bytes(AUDIO, content_type="audio/mpeg", suffix=".mp3")
    digest = hashlib.sha256(AUDIO).hexdigest()
    assert isinstance(stored, StoredMedia)
    assert stored.key == digest == stored.sha256
    assert stored.path == store.root / f"{digest}.mp3"
    assert stored.path.read_bytes() == AUDIO
    assert stored.size == len(AUDIO)
    assert stored.content_type == "audio/mpeg"


async def test_same_bytes_twice_keep_one_file(store: MediaStore) -> None:
    first = await store.put_bytes(AUDIO, content_type="audio/mpeg", suffix="mp3")
    mtime = first.path.stat().st_mtime_ns
    second = await store.put_bytes(AUDIO, content_type="audio/mpeg", suffix="mp3")
    assert first == second
    assert [p.name for p in store.root.iterdir()] == [first.path.name]
    assert second.path.stat().st_mtime_ns == mtime  # identical content is not rewritten


async def test_different_bytes_get_different_files(store: MediaStore) -> None:
    one = await store.put_bytes(AUDIO, content_type="audio/mpeg", suffix=".mp3")
    two = await store.put_bytes(AUDIO + b"!", content_type="audio/mpeg", suffix=".mp3")
    assert one.path != two.path
    assert len(list(store.root.iterdir())) == 2


async def test_explicit_key_replaces_content_atomically(store: MediaStore) -> None:
    await store.put_bytes(b"old audio", content_type="audio/wav", suffix=".wav", key="intro")
    stored = await store.put_bytes(
        b"new audio", content_type="audio/wav", suffix=".wav", key="intro"
    )
    assert stored.key == "intro"
    assert stored.path.read_bytes() == b"new audio"
    assert stored.sha256 == hashlib.sha256(b"new audio").hexdigest()
    assert sorted(p.name for p in store.root.iterdir()) == ["intro.wav"]  # no temp files left


async def test_failed_write_leaves_no_temp_file(
    store: MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        await store.put_bytes(AUDIO, content_type="audio/mpeg", suffix=".mp3")
    assert list(store.root.iterdir()) == []


async def test_size_limit(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, max_bytes=10)
    assert (
        await store.put_bytes(b"0123456789", content_type="audio/pcm", suffix=".pcm")
    ).size == 10
    with pytest.raises(InvalidInput) as caught:
        await store.put_bytes(b"0123456789X", content_type="audio/pcm", suffix=".pcm")
    assert "data" in caught.value.errors
    assert "limit of 10 bytes" in caught.value.errors["data"]


async def test_default_size_limit_is_200_mb(tmp_path: Path) -> None:
    assert MediaStore(tmp_path).max_bytes == 200 * 1024 * 1024


async def test_empty_payload_is_refused(store: MediaStore) -> None:
    with pytest.raises(InvalidInput):
        await store.put_bytes(b"", content_type="audio/mpeg", suffix=".mp3")


@pytest.mark.parametrize(
    "content_type",
    ["audio/mpeg", "audio/wav", "audio/x-wav", "audio/flac", "audio/ogg", "audio/pcm",
     "video/mp4", "image/png", "image/jpeg", "Audio/MPEG; charset=binary"],
)  # fmt: skip
async def test_allowed_content_types(store: MediaStore, content_type: str) -> None:
    stored = await store.put_bytes(AUDIO, content_type=content_type, suffix=".bin")
    assert stored.content_type == content_type.split(";")[0].lower()


@pytest.mark.parametrize(
    "content_type", ["text/html", "application/json", "image/svg+xml", "audio/basic", ""]
)
async def test_other_content_types_are_refused(store: MediaStore, content_type: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await store.put_bytes(AUDIO, content_type=content_type, suffix=".mp3")
    assert "content_type" in caught.value.errors
    assert not store.root.exists() or list(store.root.iterdir()) == []


@pytest.mark.parametrize("key", ["../escape", "a/b", ".hidden", "", "x" * 129, "a b"])
async def test_keys_cannot_escape_the_root(store: MediaStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        await store.put_bytes(AUDIO, content_type="audio/mpeg", suffix=".mp3", key=key)


@pytest.mark.parametrize("suffix", ["/mp3", ".mp3/../x", "..", ".toolongsuffix"])
async def test_suffixes_are_plain(store: MediaStore, suffix: str) -> None:
    with pytest.raises(InvalidInput):
        await store.put_bytes(AUDIO, content_type="audio/mpeg", suffix=suffix)


def test_from_settings_uses_home_media(settings: Settings) -> None:
    assert MediaStore.from_settings(settings).root == settings.home / "media"
