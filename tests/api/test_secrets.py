"""No stored secret in a log line or a response body, whatever path a request takes."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
import pytest

from arkyra.api.logging import (
    REDACTED,
    JsonFormatter,
    RedactionFilter,
    configure_logging,
    redact,
    remember_secret,
)
from arkyra.sandbox.state import SandboxState
from tests.api.conftest import Vendors
from tests.api.test_jobs import VIDEO, wait_final

SECRET = "hg_secret_scan_7f3a9c1e5b2d4a6c8e0f"
WRONG = "wrong_secret_scan_0a1b2c3d4e5f"


def echoing_vendor(secret: str) -> httpx.AsyncClient:
    """A vendor that repeats the key it was sent in its error message (it happens)."""

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers.get("x-api-key", "")
        return httpx.Response(
            400,
            json={"data": None, "error": {"code": "invalid_parameter", "message": f"bad {key}"}},
        )

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def exploding_vendor(secret: str) -> httpx.AsyncClient:
    """A transport bug whose exception text includes the key."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"transport exploded with {request.headers.get('x-api-key')}")

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_no_secret_in_logs_or_bodies(
    api: httpx.AsyncClient,
    auth,
    vendors: Vendors,
    sandbox_state: SandboxState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox_state.faults_for("heygen").job_seconds = 0.02
    stream = io.StringIO()
    handler = configure_logging("DEBUG", stream)
    bodies: list[str] = []
    caplog.set_level(logging.DEBUG)
    try:
        admin = auth()

        async def send(method: str, url: str, **kwargs) -> httpx.Response:
            response = await api.request(method, url, headers=admin, **kwargs)
            bodies.append(response.text + json.dumps(dict(response.headers)))
            return response

        refused = await send("POST", "/third-party/heygen", json={"fields": {"api_key": WRONG}})
        assert refused.status_code == 400
        connected = await send("POST", "/third-party/heygen", json={"fields": {"api_key": SECRET}})
        integration_id = connected.json()["id"]
        await send("GET", "/third-party")
        await send("POST", f"/third-party/function/{integration_id}/voices", json={})
        job = await send("POST", f"/third-party/{integration_id}/submit", json={"input": VIDEO})
        bodies.append(json.dumps(await wait_final(api, job.json()["job_id"], admin)))

        vendors.override = echoing_vendor(SECRET)
        echoed = await send("POST", f"/third-party/function/{integration_id}/avatars", json={})
        assert echoed.status_code == 400
        assert REDACTED in echoed.json()["message"]
        echoed_job = await send(
            "POST", f"/third-party/{integration_id}/submit", json={"input": VIDEO}
        )
        bodies.append(json.dumps(await wait_final(api, echoed_job.json()["job_id"], admin)))
        await vendors.override.aclose()

        vendors.override = exploding_vendor(SECRET)
        crashed = await send("POST", f"/third-party/function/{integration_id}/avatars", json={})
        assert crashed.status_code == 500
        assert crashed.json()["error"] == "internal"
        assert crashed.json()["request_id"] == crashed.headers["x-request-id"]
        assert "RuntimeError" not in crashed.text
        await vendors.override.aclose()
        vendors.override = None

        await send("DELETE", f"/third-party/{integration_id}")
        await asyncio.sleep(0)
    finally:
        vendors.override = None
        logging.getLogger().removeHandler(handler)

    logged = stream.getvalue() + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records
    )
    assert "transport exploded" in logged  # the crash was logged (with its request id) ...
    assert crashed.headers["x-request-id"] in stream.getvalue()
    for secret in (SECRET, WRONG):
        leaks = [x for x in logged.splitlines() if secret in x]
        assert not leaks, leaks[:3]  # ... but never the key
        for body in bodies:
            assert secret not in body
    for line in stream.getvalue().splitlines():
        json.loads(line)  # every line is one JSON object


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
        "{'X-Api-Key': 'plainvalue123'}",
        'headers={"x-api-key": "plainvalue123"}',
        "calling with sk-proj-abcdefghijklmnop",
        "key hg_1234567890abcdef",
        "signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "posthog phx_abcdefghijklmnopqrstu",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "api_key=plainvalue123&x=1",
    ],
)
def test_secret_shapes_are_redacted(text: str) -> None:
    redacted = redact(text)
    assert REDACTED in redacted
    for token in (
        "abcdefghijklmnopqrstuvwxyz",
        "plainvalue123",
        "abcdefghijklmnop",
        "1234567890abcdef",
    ):
        assert token not in redacted


def test_plain_text_is_left_alone() -> None:
    text = "connected heygen integration 6d8a3c2e in 12 ms (status 200)"
    assert redact(text) == text


def test_remembered_values_are_redacted_anywhere() -> None:
    remember_secret("a-custom-credential-without-prefix")
    assert redact("x=a-custom-credential-without-prefix!") == f"x={REDACTED}!"
    remember_secret("short")  # too short to redact safely; ignored
    assert redact("short") == "short"


def test_the_filter_rewrites_records_for_every_handler() -> None:
    record = logging.LogRecord(
        "arkyra.test", logging.INFO, __file__, 1, "sending %s", ("sk-abcdefghijklmnop",), None
    )
    record.headers = {"Authorization": "Bearer abcdefghijklmnop"}
    assert RedactionFilter().filter(record)
    assert "sk-abcdefghijklmnop" not in record.getMessage()
    line = JsonFormatter().format(record)
    assert "abcdefghijklmnop" not in line
    assert json.loads(line)["message"] == f"sending {REDACTED}"
