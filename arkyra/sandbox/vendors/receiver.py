"""Webhook receiver emulator: records every delivery and answers as each path is told to.

Mounted at ``/receiver``. Any ``POST /receiver/<path>`` is a delivery: it is recorded (headers,
raw body, ``webhook-id``, whether the signature verified) and answered with the behaviour set
for ``<path>``, else with a vendor-like default:

- ``hooks/catch/...`` (Zapier): 200 ``{"status": "success", "attempt", "id", "request_id"}``,
  an empty body after ``silent/``;
- ``make/<token>``: 200 ``text/plain`` ``Accepted``;
- ``webhook/<path>`` (n8n): 200 ``{"message": "Workflow was started"}``; ``webhook-test/<path>``:
  the 404 n8n gives an unregistered test URL;
- anything else: 200 ``{"received": true, "webhook_id": ...}``.

Control routes (per receiver path):

- ``PUT /receiver/_control/<path>`` with ``{"status", "delay_ms", "retry_after", "body",
  "location", "times", "secret"}``: answer with ``status`` (and ``Retry-After``, ``Location``,
  ``body``) after ``delay_ms``; ``times`` limits it to the next N deliveries, after which the
  path answers normally again. With ``secret`` (``whsec_...``) signatures are verified with the
  ``standardwebhooks`` library and a bad one gets 401.
- ``GET /receiver/_control/<path>``: the behaviour, every recorded delivery and the ids
  accepted (answered 2xx), each once.
- ``DELETE /receiver/_control/<path>``: forget the path's behaviour and deliveries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "receiver"
STATUS_KEYS = ("status", "delay_ms", "retry_after", "body", "location", "times")
KNOWN_KEYS = frozenset((*STATUS_KEYS, "secret"))


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """The receiver's error body for injected faults."""
    message = "rate limited (sandbox fault)" if kind == "rate_limit" else "receiver unavailable"
    return JSONResponse({"error": message}, status_code=status)


def path_key(path: str) -> str:
    """Receiver paths compare without leading or trailing slashes."""
    return path.strip("/")


def _store(state: SandboxState) -> dict[str, Any]:
    store = state.store(IDENTIFIER)
    store.setdefault("behaviours", {})
    store.setdefault("deliveries", {})
    return store


def _validate(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ValueError("send a JSON object")
    unknown = set(config) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    status = config.get("status")
    if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
        raise ValueError("status must be an HTTP status code")
    times = config.get("times")
    if times is not None and not (isinstance(times, int) and times >= 0):
        raise ValueError("times must be a non-negative integer")
    delay = config.get("delay_ms")
    if delay is not None and not (isinstance(delay, int | float) and delay >= 0):
        raise ValueError("delay_ms must be a non-negative number")
    if config.get("secret") is not None:
        Webhook(str(config["secret"]))  # raises on a malformed secret
    return config


def routes(state: SandboxState) -> list[BaseRoute]:
    async def put_control(request: Request) -> JSONResponse:
        try:
            config = _validate(await request.json())
        except Exception as exc:  # any bad input is the caller's 400
            return JSONResponse({"error": str(exc)}, status_code=400)
        key = path_key(request.path_params["path"])
        store = _store(state)
        with state.lock:
            store["behaviours"][key] = dict(config)
        return JSONResponse({"path": key, "behaviour": config})

    async def get_control(request: Request) -> JSONResponse:
        key = path_key(request.path_params["path"])
        store = _store(state)
        with state.lock:
            deliveries = list(store["deliveries"].get(key, []))
            behaviour = dict(store["behaviours"].get(key, {}))
        behaviour.pop("secret", None)
        accepted = list(dict.fromkeys(d["webhook_id"] for d in deliveries if d["accepted"]))
        return JSONResponse(
            {
                "path": key,
                "behaviour": behaviour,
                "deliveries": deliveries,
                "accepted_ids": accepted,
            }
        )

    async def delete_control(request: Request) -> Response:
        key = path_key(request.path_params["path"])
        store = _store(state)
        with state.lock:
            store["behaviours"].pop(key, None)
            store["deliveries"].pop(key, None)
        return Response(status_code=204)

    async def deliver(request: Request) -> Response:
        key = path_key(request.path_params["path"])
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        behaviour = _take_behaviour(state, key)
        verified = _verify(behaviour.get("secret"), body, headers)
        if behaviour.get("delay_ms"):
            await asyncio.sleep(float(behaviour["delay_ms"]) / 1000)
        if verified is False:
            response: Response = JSONResponse({"error": "invalid signature"}, status_code=401)
        elif behaviour.get("status") is not None:
            response = _configured(behaviour)
        else:
            response = _default(key, headers.get("webhook-id"))
        record = {
            "webhook_id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
            "status": response.status_code,
            "accepted": 200 <= response.status_code < 300,
            "verified": verified,
            "received_at": time.time(),
        }
        store = _store(state)
        with state.lock:
            store["deliveries"].setdefault(key, []).append(record)
        return response

    return [
        Route("/_control/{path:path}", put_control, methods=["PUT"]),
        Route("/_control/{path:path}", get_control, methods=["GET"]),
        Route("/_control/{path:path}", delete_control, methods=["DELETE"]),
        Route("/{path:path}", deliver, methods=["POST"]),
    ]


def _take_behaviour(state: SandboxState, key: str) -> dict[str, Any]:
    """The path's behaviour for this delivery; a ``times`` budget is spent here, and once it
    is spent the path answers normally again (a configured secret stays)."""
    behaviours = _store(state)["behaviours"]
    with state.lock:
        current = behaviours.get(key)
        if current is None:
            return {}
        kept = {"secret": current["secret"]} if current.get("secret") else {}
        times = current.get("times")
        if times is None:
            return dict(current)
        snapshot = dict(current) if times > 0 else dict(kept)
        current["times"] = max(0, times - 1)
        if current["times"] == 0:
            if kept:
                behaviours[key] = kept
            else:
                behaviours.pop(key, None)
        return snapshot


def _verify(secret: str | None, body: bytes, headers: dict[str, str]) -> bool | None:
    if not secret:
        return None
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError):
        return False
    return True


def _configured(behaviour: dict[str, Any]) -> Response:
    status = int(behaviour["status"])
    body = behaviour.get("body")
    response: Response = (
        JSONResponse(body, status_code=status)
        if isinstance(body, dict | list)
        else PlainTextResponse(str(body) if body is not None else "", status_code=status)
    )
    if behaviour.get("retry_after") is not None:
        response.headers["Retry-After"] = str(behaviour["retry_after"])
    if behaviour.get("location"):
        response.headers["Location"] = str(behaviour["location"])
    return response


def _default(key: str, webhook_id: str | None) -> Response:
    """A vendor-like answer, chosen by the shape of the path."""
    segments = key.split("/")
    if "catch" in segments and "hooks" in segments:
        if segments[-1] == "silent":
            return Response(status_code=200)
        return JSONResponse(
            {
                "status": "success",
                "attempt": str(uuid.uuid4()),
                "id": str(uuid.uuid4()),
                "request_id": uuid.uuid4().hex[:16],
            }
        )
    if segments[0] == "make":
        return PlainTextResponse("Accepted")
    if "webhook-test" in segments:
        name = key.split("webhook-test/", 1)[-1]
        return JSONResponse(
            {
                "code": 404,
                "message": f'The requested webhook "POST {name}" is not registered.',
                "hint": "Click the 'Execute workflow' button on the canvas, then try again.",
            },
            status_code=404,
        )
    if "webhook" in segments:
        return JSONResponse({"message": "Workflow was started"})
    return JSONResponse({"received": True, "webhook_id": webhook_id})
