"""The sandbox framework itself (fault knobs, call counts, reset, serving), driven via HeyGen.

HeyGen is the reference vendor: its routes and error bodies make the framework's behaviour
observable. Vendor-specific behaviour is in ``test_heygen_sandbox.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from arkyra.providers import get_provider
from arkyra.sandbox.app import create_app, vendor_modules
from arkyra.sandbox.faults import Faults
from arkyra.sandbox.server import running_sandbox
from arkyra.sandbox.state import SandboxState
from tests.conftest import make_settings

KEY = {"X-Api-Key": "hg_framework_key"}
VOICES = "/heygen/v2/voices"
GENERATE_BODY = {
    "video_inputs": [
        {
            "character": {
                "type": "avatar",
                "avatar_id": "Daniel_standing_public",
                "avatar_style": "normal",
            },
            "voice": {
                "type": "text",
                "voice_id": "1bd001e7e50f421d891986aad5158bc8",
                "input_text": "Counting paid calls.",
            },
        }
    ]
}


async def put_faults(client: httpx.AsyncClient, **knobs: object) -> httpx.Response:
    return await client.put("/_sandbox/faults/heygen", json=knobs)


def test_heygen_is_discovered_and_listed() -> None:
    assert "heygen" in {module.IDENTIFIER for module in vendor_modules()}


async def test_index_lists_vendors(sandbox_client: httpx.AsyncClient) -> None:
    index = (await sandbox_client.get("/")).json()
    assert index["sandbox"] == "arkyra"
    assert "heygen" in index["vendors"]


# -- fault knobs ------------------------------------------------------------------------------


async def test_fault_knobs_round_trip(sandbox_client: httpx.AsyncClient) -> None:
    defaults = (await sandbox_client.get("/_sandbox/faults/heygen")).json()
    assert defaults == Faults().to_dict()

    updated = await put_faults(sandbox_client, latency_ms=5, job_seconds=0.5, error_status=502)

    assert updated.status_code == 200
    assert updated.json()["latency_ms"] == 5.0
    assert updated.json()["error_status"] == 502
    assert (await sandbox_client.get("/_sandbox/faults/heygen")).json() == updated.json()


async def test_error_rate_one_gives_a_heygen_shaped_503(
    sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    assert (await put_faults(sandbox_client, error_rate=1)).status_code == 200

    response = await sandbox_client.get(VOICES, headers=KEY)

    assert response.status_code == 503
    assert response.json() == {
        "data": None,
        "error": {"code": "internal_error", "message": "Internal server error, please retry"},
    }
    assert sandbox_state.calls[f"heygen GET {VOICES}"] == 1, "faulted calls are counted too"


async def test_error_status_knob_changes_the_status(sandbox_client: httpx.AsyncClient) -> None:
    await put_faults(sandbox_client, error_rate=1, error_status=500)
    assert (await sandbox_client.get(VOICES, headers=KEY)).status_code == 500


async def test_rate_limit_rate_one_gives_429_with_retry_after(
    sandbox_client: httpx.AsyncClient,
) -> None:
    await put_faults(sandbox_client, rate_limit_rate=1, retry_after_seconds=2)

    response = await sandbox_client.get(VOICES, headers=KEY)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json() == {"code": 400123, "data": None, "message": "Exceed rate limit"}


async def test_timeout_knob_waits_then_answers_504(sandbox_client: httpx.AsyncClient) -> None:
    await put_faults(sandbox_client, timeout_rate=1, timeout_seconds=0.05)
    started = time.monotonic()
    response = await sandbox_client.get(VOICES, headers=KEY)
    assert time.monotonic() - started >= 0.05
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "internal_error"


async def test_latency_knob_delays_answers(sandbox_client: httpx.AsyncClient) -> None:
    await put_faults(sandbox_client, latency_ms=60)
    started = time.monotonic()
    response = await sandbox_client.get(VOICES, headers=KEY)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.06


async def test_unknown_knob_is_a_400_naming_the_knob(sandbox_client: httpx.AsyncClient) -> None:
    response = await put_faults(sandbox_client, explode=True)

    assert response.status_code == 400
    assert "explode" in response.json()["error"]
    assert (await sandbox_client.get("/_sandbox/faults/heygen")).json() == Faults().to_dict()
    assert (await sandbox_client.get(VOICES, headers=KEY)).status_code == 200


async def test_a_knob_that_is_not_a_number_is_a_400(sandbox_client: httpx.AsyncClient) -> None:
    response = await put_faults(sandbox_client, error_rate="often")
    assert response.status_code == 400


async def test_faults_are_per_vendor(
    sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("some-other-vendor").error_rate = 1.0
    assert (await sandbox_client.get(VOICES, headers=KEY)).status_code == 200


# -- call counts and reset --------------------------------------------------------------------


async def test_calls_and_paid_calls_are_counted(sandbox_client: httpx.AsyncClient) -> None:
    await sandbox_client.get(VOICES, headers=KEY)
    await sandbox_client.get(VOICES, headers=KEY)
    created = await sandbox_client.post(
        "/heygen/v2/video/generate", json=GENERATE_BODY, headers=KEY
    )
    refused = await sandbox_client.post(
        "/heygen/v2/video/generate", json={"video_inputs": []}, headers=KEY
    )
    assert (created.status_code, refused.status_code) == (200, 400)

    counts = (await sandbox_client.get("/_sandbox/calls")).json()

    assert counts["calls"][f"heygen GET {VOICES}"] == 2
    assert counts["calls"]["heygen POST /heygen/v2/video/generate"] == 2
    assert counts["paid_calls"] == {"heygen": 1}, "only the accepted render is paid"


async def test_reset_clears_counts_faults_and_jobs(
    sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    created = await sandbox_client.post(
        "/heygen/v2/video/generate", json=GENERATE_BODY, headers=KEY
    )
    video_id = created.json()["data"]["video_id"]
    await put_faults(sandbox_client, latency_ms=1, job_seconds=9)

    reset = await sandbox_client.post("/_sandbox/reset")

    assert reset.status_code == 204
    assert (await sandbox_client.get("/_sandbox/calls")).json() == {"calls": {}, "paid_calls": {}}
    assert (await sandbox_client.get("/_sandbox/faults/heygen")).json() == Faults().to_dict()
    status = await sandbox_client.get(
        "/heygen/v1/video_status.get", params={"video_id": video_id}, headers=KEY
    )
    assert status.status_code == 404
    assert sandbox_state.job("heygen", video_id) is None


async def test_each_app_has_its_own_state() -> None:
    first, second = SandboxState(), SandboxState()
    transport = httpx.ASGITransport(app=create_app(first))
    async with httpx.AsyncClient(transport=transport, base_url="http://one.test") as client:
        await client.get(VOICES, headers=KEY)
    assert sum(first.calls.values()) == 1
    assert not second.calls


# -- serving on a real port -------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_running_sandbox_serves_on_loopback(tmp_path: Path) -> None:
    state = SandboxState()
    with running_sandbox(state=state) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert sandbox.state is state
        async with httpx.AsyncClient(base_url=sandbox.url) as client:
            voices = await client.get(VOICES, headers=KEY)
            assert voices.status_code == 200
            assert voices.json()["data"]["voices"]

            settings = make_settings(tmp_path, sandbox_url=sandbox.url)
            heygen = get_provider("heygen", settings=settings, client=client)
            assert heygen.base_url == f"{sandbox.url}/heygen"
            account = await heygen.check_connection({"api_key": "hg_over_tcp"})
            assert account.id.startswith("sandbox_")

        assert state.calls[f"heygen GET {VOICES}"] == 1
        assert state.calls["heygen GET /heygen/v1/user/me"] == 1
