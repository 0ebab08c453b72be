"""The sandbox receiver: records deliveries, answers per path, verifies signatures on request."""

from __future__ import annotations

import time
from typing import Any

import httpx

from arkyra.delivery import signing
from tests.delivery.conftest import receiver_log, set_behaviour

BODY = b'{"type":"video.rendered","timestamp":"2026-11-25T12:00:00Z","data":{}}'


def signed(secret: str, message_id: str = "msg_1", at: int | None = None) -> dict[str, str]:
    headers = signing.signed_headers(message_id, at or int(time.time()), BODY, [secret])
    return {**headers, "content-type": "application/json"}


async def test_a_times_budget_then_normal_answers(control: httpx.AsyncClient) -> None:
    await set_behaviour(control, "p", status=503, retry_after=12, times=2, body="down")
    answers = [await control.post("/receiver/p", content=BODY) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["retry-after"] == "12"
    assert answers[0].text == "down"
    log = await receiver_log(control, "p")
    assert [d["status"] for d in log["deliveries"]] == [503, 503, 200]
    assert log["behaviour"] == {}


async def test_redirects_delays_and_json_bodies(control: httpx.AsyncClient) -> None:
    await set_behaviour(control, "r", status=308, location="https://elsewhere.example/")
    answer = await control.post("/receiver/r", content=BODY)
    assert answer.status_code == 308
    assert answer.headers["location"] == "https://elsewhere.example/"
    await set_behaviour(control, "j", status=422, body={"error": "nope"}, delay_ms=20)
    started = time.perf_counter()
    answer = await control.post("/receiver/j", content=BODY)
    assert answer.status_code == 422
    assert answer.json() == {"error": "nope"}
    assert time.perf_counter() - started >= 0.02


async def test_signatures_are_verified_when_a_secret_is_set(control: httpx.AsyncClient) -> None:
    secret = signing.generate_secret()
    await set_behaviour(control, "s", secret=secret, status=500, times=1)
    first = await control.post("/receiver/s", content=BODY, headers=signed(secret, "msg_a"))
    good = await control.post("/receiver/s", content=BODY, headers=signed(secret, "msg_a"))
    wrong = await control.post(
        "/receiver/s", content=BODY, headers=signed(signing.generate_secret(), "msg_b")
    )
    stale = await control.post(
        "/receiver/s", content=BODY, headers=signed(secret, "msg_c", int(time.time()) - 3600)
    )
    assert [r.status_code for r in (first, good, wrong, stale)] == [500, 200, 401, 401]
    log = await receiver_log(control, "s")
    assert [d["verified"] for d in log["deliveries"]] == [True, True, False, False]
    assert log["accepted_ids"] == ["msg_a"]
    assert "secret" not in log["behaviour"]  # never echoed back


async def test_bad_control_input_is_a_400_and_delete_forgets(control: httpx.AsyncClient) -> None:
    bad: list[dict[str, Any]] = [
        {"status": 42},
        {"times": -1},
        {"colour": "red"},
        {"secret": "whsec_"},
        {"delay_ms": "soon"},
    ]
    for behaviour in bad:
        response = await control.put("/receiver/_control/x", json=behaviour)
        assert response.status_code == 400, behaviour
    await control.post("/receiver/x", content=BODY)
    assert len((await receiver_log(control, "x"))["deliveries"]) == 1
    assert (await control.delete("/receiver/_control/x")).status_code == 204
    assert (await receiver_log(control, "x"))["deliveries"] == []


async def test_vendor_like_defaults(control: httpx.AsyncClient) -> None:
    zap = await control.post("/receiver/hooks/catch/1/abc/", json={})
    assert zap.json()["status"] == "success"
    assert set(zap.json()) >= {"attempt", "id", "request_id"}
    silent = await control.post("/receiver/hooks/catch/1/abc/silent/", json={})
    assert silent.status_code == 200
    assert silent.content == b""
    make = await control.post("/receiver/make/abcdef0123456789", json={})
    assert make.text == "Accepted"
    assert make.headers["content-type"].startswith("text/plain")
    n8n = await control.post("/receiver/webhook/orders", json={})
    assert n8n.json() == {"message": "Workflow was started"}
    test = await control.post("/receiver/webhook-test/orders", json={})
    assert test.status_code == 404
    assert "is not registered" in test.json()["message"]
    generic = await control.post("/receiver/anything", json={}, headers={"webhook-id": "msg_9"})
    assert generic.json() == {"received": True, "webhook_id": "msg_9"}
