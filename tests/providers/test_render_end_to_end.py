"""Every video and voice provider end to end against the sandbox served on a real loopback socket.

Each test connects (``check_connection``), lists a catalogue (voices, avatars, templates or
presenters), renders or synthesises, and ends with a stored media file. Video results go through
:func:`arkyra.media.download.fetch_result` and the SSRF-guarded client, which reaches the
loopback sandbox only because the settings allow it (``ssrf_allow_loopback``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from arkyra.config import Settings
from arkyra.errors import UnsafeURL
from arkyra.http.ssrf import guarded_client
from arkyra.media.download import fetch_result
from arkyra.media.store import MediaStore, StoredMedia
from arkyra.providers import get_provider
from arkyra.providers.audio.speech import SpeechResult
from arkyra.providers.jobs import JobStatus
from arkyra.sandbox.server import RunningSandbox, running_sandbox
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import heygen as heygen_emulator
from tests.conftest import make_settings

VENDORS = ("heygen", "synthesia", "d-id", "runway", "elevenlabs", "murf", "playht")


@pytest.fixture(scope="module")
def live() -> Iterator[RunningSandbox]:
    """One sandbox on 127.0.0.1 for the module, with fast jobs."""
    state = SandboxState(seed=99)
    for vendor in VENDORS:
        state.faults_for(vendor).job_seconds = 0.05
    with running_sandbox(state=state) as sandbox:
        yield sandbox


@pytest.fixture
def settings(tmp_path: Path, live: RunningSandbox) -> Settings:
    return make_settings(tmp_path, sandbox_url=live.url, ssrf_allow_loopback=True)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def store(settings: Settings) -> MediaStore:
    return MediaStore.from_settings(settings)


async def render_and_store(
    identifier: str,
    credentials: dict[str, str],
    request: dict[str, object],
    settings: Settings,
    http: httpx.AsyncClient,
    store: MediaStore,
) -> StoredMedia:
    """send_data -> wait_for_job -> fetch_result through the guarded client."""
    provider = get_provider(identifier, settings=settings, client=http)
    job = await provider.send_data(credentials, request)
    done = await provider.wait_for_job(credentials, job.id)  # type: ignore[attr-defined]
    assert done.status is JobStatus.SUCCEEDED
    assert done.result_url
    assert done.result_url.startswith(settings.sandbox_url)
    return await fetch_result(provider, credentials, done, store)  # type: ignore[arg-type]


def assert_mp4(stored: StoredMedia, store: MediaStore) -> None:
    assert stored.path.parent == store.root
    assert stored.path.suffix == ".mp4"
    assert stored.content_type == "video/mp4"
    assert stored.path.read_bytes()[4:8] == b"ftyp"


# -- video ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v2", "v3"])
async def test_heygen(
    settings: Settings, http: httpx.AsyncClient, store: MediaStore, version: str
) -> None:
    creds = {"api_key": "hg_e2e_key_0123456789", "api_version": version}
    heygen = get_provider("heygen", settings=settings, client=http)

    account = await heygen.check_connection(creds)
    avatars = await heygen.call("avatars", creds, {"kind": "talking_photo"})
    voices = await heygen.call("voices", creds, {"language": "English"})
    stored = await render_and_store(
        "heygen",
        creds,
        {"script": "End to end.", "talking_photo_id": avatars[0].id, "voice_id": voices[0].id},
        settings,
        http,
        store,
    )

    assert account.id.startswith("sandbox_")
    assert_mp4(stored, store)


async def test_heygen_expired_result_url_is_refreshed_over_the_socket(
    settings: Settings, http: httpx.AsyncClient, store: MediaStore, live: RunningSandbox
) -> None:
    creds = {"api_key": "hg_e2e_key_expiry_0123"}
    heygen = get_provider("heygen", settings=settings, client=http)
    live.state.store("heygen")["url_ttl_seconds"] = 0.3
    try:
        job = await heygen.send_data(
            creds,
            {"script": "Hi.", "avatar_id": heygen_emulator.AVATARS[0]["avatar_id"],
             "voice_id": heygen_emulator.VOICES[0]["voice_id"]},
        )  # fmt: skip
        done = await heygen.wait_for_job(creds, job.id)  # type: ignore[attr-defined]
        await asyncio.sleep(0.4)  # the signed URL has expired
        before = live.state.calls["heygen GET /heygen/v1/video_status.get"]
        stored = await fetch_result(heygen, creds, done, store)  # type: ignore[arg-type]
    finally:
        live.state.store("heygen").pop("url_ttl_seconds", None)

    assert_mp4(stored, store)
    assert live.state.calls["heygen GET /heygen/v1/video_status.get"] == before + 1


async def test_synthesia(settings: Settings, http: httpx.AsyncClient, store: MediaStore) -> None:
    creds = {"api_key": "syn-e2e-key-0123456789", "label": "E2E"}
    synthesia = get_provider("synthesia", settings=settings, client=http)

    account = await synthesia.check_connection(creds)
    templates = await synthesia.call("templates", creds, {"page_size": 3})
    stored = await render_and_store(
        "synthesia",
        creds,
        {"template_id": templates[0].id, "template_data": {"name": "Ada"}},
        settings,
        http,
        store,
    )

    assert account.name == "E2E"
    assert len(templates) > 3, "all pages were read"
    assert_mp4(stored, store)


async def test_d_id(settings: Settings, http: httpx.AsyncClient, store: MediaStore) -> None:
    creds = {"api_key": "e2e@example.com:d1dSecret77"}
    d_id = get_provider("d-id", settings=settings, client=http)

    account = await d_id.check_connection(creds)
    presenters = await d_id.call("presenters", creds, {"page_size": 2})
    voices = await d_id.call("voices", creds, {"language": "en-US"})
    stored = await render_and_store(
        "d-id",
        creds,
        {
            "presenter_id": presenters[0].id,
            "script": {
                "type": "text",
                "input": "End to end with D-ID.",
                "provider": {"type": "microsoft", "voice_id": voices[0].id},
            },
        },
        settings,
        http,
        store,
    )

    assert account.id.startswith("auth0|")
    assert len(presenters) > 2, "all pages were read"
    assert_mp4(stored, store)


async def test_runway(settings: Settings, http: httpx.AsyncClient, store: MediaStore) -> None:
    creds = {"api_key": "key_runway_e2e_0123456789"}
    runway = get_provider("runway", settings=settings, client=http)

    account = await runway.check_connection(creds)
    voices = await runway.call("voices", creds, {})
    stored = await render_and_store(
        "runway",
        creds,
        {"model": "gen4_turbo", "promptImage": "https://example.com/first-frame.png",
         "ratio": "1280:720", "promptText": "A slow pan", "duration": 5},
        settings,
        http,
        store,
    )  # fmt: skip

    assert account.id.startswith("fp_")
    assert voices
    assert_mp4(stored, store)


async def test_video_results_are_refused_without_the_loopback_allowance(
    tmp_path: Path, live: RunningSandbox, http: httpx.AsyncClient
) -> None:
    strict = make_settings(tmp_path, sandbox_url=live.url, ssrf_allow_loopback=False)
    creds = {"api_key": "key_runway_e2e_strict_01"}
    runway = get_provider("runway", settings=strict, client=http)
    job = await runway.send_data(
        creds,
        {"model": "gen4_turbo", "promptImage": "https://example.com/f.png",
         "ratio": "1280:720", "promptText": "x", "duration": 5},
    )  # fmt: skip
    done = await runway.wait_for_job(creds, job.id)  # type: ignore[attr-defined]
    async with guarded_client(strict) as guarded:
        with pytest.raises(UnsafeURL):
            await fetch_result(runway, creds, done, MediaStore(tmp_path / "m"), client=guarded)  # type: ignore[arg-type]


# -- voice ------------------------------------------------------------------------------------


async def synthesize(
    identifier: str, creds: dict[str, str], settings: Settings, http: httpx.AsyncClient
) -> tuple[SpeechResult, list[dict[str, object]]]:
    provider = get_provider(identifier, settings=settings, client=http)
    await provider.check_connection(creds)
    voices = await provider.call("voices", creds, {})
    result = await provider.send_data(
        creds, {"text": "End to end speech.", "voice_id": str(voices[0]["id"])}
    )
    assert isinstance(result, SpeechResult)
    return result, voices


@pytest.mark.parametrize(
    ("identifier", "creds"),
    [
        ("elevenlabs", {"api_key": "sk_el_e2e_0123456789"}),
        ("murf", {"api_key": "ap2_murf_e2e_0123456789"}),
        ("playht", {"user_id": "u-e2e", "api_key": "playht-e2e-secret-0123"}),
    ],
)
async def test_voice_providers(
    settings: Settings, http: httpx.AsyncClient, identifier: str, creds: dict[str, str]
) -> None:
    result, voices = await synthesize(identifier, creds, settings, http)

    assert voices
    media = result.media
    assert media.path.is_file()
    assert media.path.parent == settings.home / "media"
    assert media.content_type == "audio/mpeg"
    assert media.path.stat().st_size == media.size > 0
    assert result.characters == len("End to end speech.")
