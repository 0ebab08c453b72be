"""Asking a vendor what it already made: ``find_submitted`` (a render, by client reference)
and ``find_spoken`` (speech, from ElevenLabs' history).

Against the sandbox (HeyGen v2 and v3 connections, Synthesia), and with respx for where the
search stops: videos older than the note are never read one by one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from arkyra.config import Settings
from arkyra.errors import ProviderError
from arkyra.providers import get_provider
from arkyra.providers.jobs import LOOKUP_MAX_PAGES
from arkyra.sandbox.server import RunningSandbox, running_sandbox
from arkyra.sandbox.state import SandboxState
from tests.conftest import make_settings

HEYGEN_VIDEO = {
    "script": "Hello there",
    "avatar_id": "Abigail_expressive_2024112501",
    "voice_id": "2d5b0e6cf36f460aa7fc47e3eee4ba54",
    "test": True,
}
SYNTHESIA_VIDEO = {
    "input": [{"scriptText": "Hello there", "avatar": "anna", "background": "green_screen"}],
}
CASES = [
    ("heygen", {"api_key": "hg_lookup"}, HEYGEN_VIDEO, "callback_id"),
    ("heygen", {"api_key": "hg_lookup", "api_version": "v3"}, HEYGEN_VIDEO, "callback_id"),
    ("synthesia", {"api_key": "syn_lookup"}, SYNTHESIA_VIDEO, "callbackId"),
]


@pytest.fixture(scope="module")
def live() -> Iterator[RunningSandbox]:
    with running_sandbox(state=SandboxState(seed=5)) as sandbox:
        yield sandbox


@pytest.fixture
def settings(tmp_path: Path, live: RunningSandbox) -> Settings:
    return make_settings(tmp_path, sandbox_url=live.url, ssrf_allow_loopback=True)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.mark.parametrize(("identifier", "credentials", "request_body", "field"), CASES)
async def test_the_render_sent_with_a_reference_is_found_by_it(
    settings: Settings,
    http: httpx.AsyncClient,
    identifier: str,
    credentials: dict[str, str],
    request_body: dict[str, Any],
    field: str,
) -> None:
    provider = get_provider(identifier, settings=settings, client=http)
    assert provider.reference_field == field  # type: ignore[attr-defined]
    since = time.time() - 5
    wanted = await provider.send_data(credentials, {**request_body, field: "video-abc"})
    await provider.send_data(credentials, {**request_body, field: "video-other"})
    await provider.send_data(credentials, request_body)

    assert await provider.find_submitted(credentials, "video-abc", since) == wanted.id  # type: ignore[attr-defined]
    assert await provider.find_submitted(credentials, "video-never-sent", since) is None  # type: ignore[attr-defined]
    later = time.time() + 60  # asked about renders after this one: it is not among them
    assert await provider.find_submitted(credentials, "video-abc", later) is None  # type: ignore[attr-defined]


async def test_heygen_never_finds_another_accounts_video(
    settings: Settings, http: httpx.AsyncClient
) -> None:
    provider = get_provider("heygen", settings=settings, client=http)
    since = time.time() - 5
    await provider.send_data({"api_key": "hg_one"}, {**HEYGEN_VIDEO, "callback_id": "video-x"})

    assert await provider.find_submitted({"api_key": "hg_two"}, "video-x", since) is None  # type: ignore[attr-defined]


BASE = "https://api.heygen.com"


@pytest.fixture
def heygen(http: httpx.AsyncClient, tmp_path: Path) -> Any:
    """HeyGen at its real base URL (respx answers)."""
    return get_provider("heygen", settings=make_settings(tmp_path, sandbox=False), client=http)


def listed(video_id: str, created_at: float) -> dict[str, Any]:
    return {"video_id": video_id, "video_title": "", "status": "completed",
            "created_at": int(created_at), "type": "GENERATED"}  # fmt: skip


@respx.mock
async def test_heygen_reads_no_status_of_a_video_older_than_the_note(
    heygen: Any,
) -> None:
    now = time.time()
    respx.get(f"{BASE}/v1/video.list").respond(json={"code": 100, "message": "Success", "data": {
        "videos": [listed("new", now), listed("old", now - 3600)], "token": "page-2"}})  # fmt: skip
    status = respx.get(f"{BASE}/v1/video_status.get").respond(
        json={"code": 100, "data": {"id": "new", "status": "completed", "callback_id": "mine"}}
    )

    found = await heygen.find_submitted({"api_key": "hg_k"}, "mine", now - 60)

    assert found == "new"
    assert [dict(c.request.url.params) for c in status.calls] == [{"video_id": "new"}]


@respx.mock
async def test_heygen_stops_at_the_first_page_with_nothing_recent(
    heygen: Any,
) -> None:
    now = time.time()
    pages = respx.get(f"{BASE}/v1/video.list").respond(json={"code": 100, "data": {
        "videos": [listed("old", now - 3600)], "token": "page-2"}})  # fmt: skip
    status = respx.get(f"{BASE}/v1/video_status.get")

    assert await heygen.find_submitted({"api_key": "hg_k"}, "mine", now - 60) is None
    assert pages.call_count == 1
    assert status.call_count == 0


@respx.mock
async def test_heygen_says_so_when_there_are_too_many_videos_to_search(
    heygen: Any,
) -> None:
    now = time.time()
    respx.get(f"{BASE}/v1/video.list").respond(json={"code": 100, "data": {
        "videos": [listed("recent", now)], "token": "more"}})  # fmt: skip
    respx.get(f"{BASE}/v1/video_status.get").respond(
        json={"code": 100, "data": {"id": "recent", "status": "completed", "callback_id": "x"}}
    )

    with pytest.raises(ProviderError, match="recent videos to search"):
        await heygen.find_submitted({"api_key": "hg_k"}, "mine", now - 60)
    assert respx.calls.call_count == 2 * LOOKUP_MAX_PAGES


# -- speech: ElevenLabs' history ---------------------------------------------------------------

SPEECH = {"text": "Welcome back to the show", "voice_id": "sbxVoice001abcdefgh"}


async def test_elevenlabs_finds_the_same_speech_in_its_history(
    settings: Settings, http: httpx.AsyncClient, live: RunningSandbox
) -> None:
    provider = get_provider("elevenlabs", settings=settings, client=http)
    credentials = {"api_key": "el_lookup"}
    since = time.time() - 5
    made = await provider.send_data(credentials, SPEECH)
    paid = live.state.paid_calls["elevenlabs"]

    found = await provider.find_spoken(credentials, SPEECH, since)  # type: ignore[attr-defined]

    assert found is not None
    assert found.media.sha256 == made.media.sha256
    assert found.characters == len(SPEECH["text"])
    assert live.state.paid_calls["elevenlabs"] == paid  # reading the history is free
    other_text = {**SPEECH, "text": "Something else"}
    assert await provider.find_spoken(credentials, other_text, since) is None  # type: ignore[attr-defined]
    other_model = {**SPEECH, "model": "eleven_flash_v2_5"}
    assert await provider.find_spoken(credentials, other_model, since) is None  # type: ignore[attr-defined]
    assert await provider.find_spoken(credentials, SPEECH, time.time() + 60) is None  # type: ignore[attr-defined]
    assert await provider.find_spoken({"api_key": "el_other"}, SPEECH, since) is None  # type: ignore[attr-defined]
    as_pcm = {**SPEECH, "format": "pcm"}  # the history keeps MP3 only
    assert await provider.find_spoken(credentials, as_pcm, since) is None  # type: ignore[attr-defined]


# -- the sandbox's history and list routes refuse what they cannot read -------------------------


async def test_the_sandbox_lists_refuse_non_numeric_paging(
    http: httpx.AsyncClient, live: RunningSandbox
) -> None:
    heygen = await http.get(
        f"{live.url}/heygen/v1/video.list", params={"token": "next"},
        headers={"X-Api-Key": "hg_lookup"},
    )  # fmt: skip
    eleven = await http.get(
        f"{live.url}/elevenlabs/v1/history", params={"page_size": "many"},
        headers={"xi-api-key": "el_lookup"},
    )  # fmt: skip
    late = await http.get(
        f"{live.url}/elevenlabs/v1/history", params={"date_after_unix": "yesterday"},
        headers={"xi-api-key": "el_lookup"},
    )  # fmt: skip
    missing = await http.get(
        f"{live.url}/elevenlabs/v1/history/nope/audio", headers={"xi-api-key": "el_lookup"}
    )

    assert heygen.status_code == 400
    assert heygen.json()["code"] == 40001
    assert eleven.status_code == 422
    assert eleven.json()["detail"][0]["loc"] == ["query", "page_size"]
    assert late.json()["detail"][0]["loc"] == ["query", "date_after_unix"]
    assert missing.status_code == 404
