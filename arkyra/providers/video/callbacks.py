"""Completion callbacks from HeyGen, Synthesia and D-ID: authenticate, then read as a RenderJob.

The HTTP route (``POST /hooks/{source}``) calls :func:`handle_render_callback` with the raw body
(never re-serialised JSON: signatures cover the exact bytes). It raises:

- :class:`CallbackRejected` when the callback cannot be authenticated: answer 401, change nothing;
- :class:`CallbackIgnored` for an authentic event that is not a render completion: answer 2xx
  (so the vendor does not retry) and drop it;
- :class:`~arkyra.errors.InvalidInput` for an unreadable body, :class:`~arkyra.errors.NotFound`
  for an unknown source.

How each vendor is authenticated (contract sections 1-3):

- HeyGen: hex HMAC-SHA256 of the raw body under the endpoint secret. The header name is
  UNCONFIRMED in HeyGen's docs; community receivers read ``X-HeyGen-Signature``, which is what
  we check (``Signature`` is also read, as one community verifier reports that name; either way
  the HMAC must match).
- Synthesia: ``Synthesia-Signature`` = hex HMAC-SHA256 of ``"{Synthesia-Timestamp}.{raw body}"``;
  timestamps more than :data:`TIMESTAMP_TOLERANCE_SECONDS` away are refused (replays).
- D-ID signs nothing, so its callback URL carries an unguessable token (see
  :func:`d_id_callback_url`), compared in constant time.

Every secret may be a list (old and new during a rotation); any one matching is enough.

The route, in short (``registry`` is the process's
:class:`~arkyra.providers.video.completion.WatcherRegistry`)::

    try:
        job = handle_render_callback(
            source, request.headers, await request.body(),
            secrets=secrets_for(org), query=request.query_params,
        )
    except CallbackRejected:
        return Response(status_code=401)
    except CallbackIgnored:
        return Response(status_code=202)
    registry.deliver(job)  # or emit a Prefect event carrying ``job``
    return Response(status_code=200)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets as secrets_module
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from arkyra.errors import ArkyraError, InvalidInput, NotFound
from arkyra.providers.jobs import JobStatus, RenderJob
from arkyra.providers.video import d_id, heygen, synthesia

#: Callback bodies are small JSON objects; anything bigger is refused before parsing.
MAX_CALLBACK_BYTES = 1024 * 1024

#: Synthesia timestamps further than this from our clock are refused.
TIMESTAMP_TOLERANCE_SECONDS = 300

HEYGEN_SIGNATURE_HEADERS = ("x-heygen-signature", "signature")
SYNTHESIA_SIGNATURE_HEADER = "synthesia-signature"
SYNTHESIA_TIMESTAMP_HEADER = "synthesia-timestamp"
D_ID_TOKEN_PARAM = "token"

HEYGEN_EVENTS = {"avatar_video.success": JobStatus.SUCCEEDED, "avatar_video.fail": JobStatus.FAILED}
SYNTHESIA_EVENTS = {"video.completed", "video.failed"}

Secrets = Mapping[str, str | Sequence[str]]


class CallbackRejected(ArkyraError):
    """The callback is not authentic (bad or missing signature or token): answer 401."""


class CallbackIgnored(ArkyraError):
    """An authentic event that is not a render completion: acknowledge it and do nothing."""


# -- the entry point --------------------------------------------------------------------------


def handle_render_callback(
    source: str,
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    secrets: Secrets,
    query: Mapping[str, str] | None = None,
    now: float | None = None,
) -> RenderJob:
    """Authenticate a vendor's completion callback and return the job update it carries.

    ``source`` is the provider identifier (``heygen``, ``synthesia``, ``d-id``); ``secrets``
    maps it to the endpoint secret (HeyGen, Synthesia) or the URL token (D-ID); ``query`` is
    the callback URL's query string (D-ID's token is there). ``now`` is for tests.
    """
    handler = _HANDLERS.get(source)
    if handler is None:
        raise NotFound(f"no render callbacks from {source!r}")
    if len(raw_body) > MAX_CALLBACK_BYTES:
        raise InvalidInput("callback body is too large", {"body": f"over {MAX_CALLBACK_BYTES}"})
    keys = _secrets_for(source, secrets)
    handler.verify(httpx.Headers(dict(headers)), raw_body, keys, query or {}, now)
    return handler.parse(_json_object(raw_body, source))


class _Handler:
    """How one vendor's callbacks are verified and read."""

    def __init__(
        self,
        verify: Callable[[httpx.Headers, bytes, list[str], Mapping[str, str], float | None], None],
        parse: Callable[[dict[str, Any]], RenderJob],
    ) -> None:
        self.verify = verify
        self.parse = parse


# -- HeyGen -----------------------------------------------------------------------------------


def heygen_signature(secret: str, raw_body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body under the endpoint secret."""
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_heygen(
    headers: httpx.Headers,
    raw_body: bytes,
    keys: list[str],
    query: Mapping[str, str] | None = None,
    now: float | None = None,
) -> None:
    """Raise :class:`CallbackRejected` unless a signature header matches one of ``keys``."""
    sent = [headers[name] for name in HEYGEN_SIGNATURE_HEADERS if headers.get(name)]
    if not sent:
        raise CallbackRejected("heygen: the callback has no signature header")
    expected = [heygen_signature(key, raw_body) for key in keys]
    if not any(_same_hex(_strip_scheme(s), e) for s in sent for e in expected):
        raise CallbackRejected("heygen: the callback signature does not match")


def parse_heygen(body: dict[str, Any]) -> RenderJob:
    """``{event_type, event_data: {video_id, url, callback_id, ...}}`` -> RenderJob.

    Failure events carry their reason in ``msg`` or ``error`` (field names UNCONFIRMED).
    """
    event = body.get("event_type")
    status = HEYGEN_EVENTS.get(event) if isinstance(event, str) else None
    if status is None:
        raise CallbackIgnored(f"heygen: event {str(event)[:80]!r} is not a video completion")
    data = body.get("event_data")
    data = data if isinstance(data, dict) else {}
    video_id = _text(data.get("video_id"))
    if video_id is None:
        raise InvalidInput("heygen: the event has no video_id", {"event_data.video_id": "missing"})
    succeeded = status is JobStatus.SUCCEEDED
    url = _text(data.get("url")) if succeeded else None
    duration = data.get("duration")
    reason = _heygen_failure(data) if not succeeded else None
    code = data.get("error_code") if not succeeded else None
    return RenderJob(
        provider="heygen",
        id=video_id,
        status=status,
        vendor_status=event,
        progress=1.0 if succeeded else None,
        result_url=url,
        result_expires_at=(datetime.now(UTC) + heygen.RESULT_URL_LIFETIME) if url else None,
        thumbnail_url=_text(data.get("thumbnail_url")),
        duration_seconds=float(duration) if isinstance(duration, int | float) else None,
        failure_reason=reason,
        failure_code=str(code) if code not in (None, "") else None,
        raw=body,
    )


def _heygen_failure(data: Mapping[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail")
    return _text(data.get("msg")) or _text(error) or "HeyGen reported the render as failed"


# -- Synthesia --------------------------------------------------------------------------------


def synthesia_signature(secret: str, timestamp: str, raw_body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.{raw body}"`` under the webhook secret."""
    return hmac.new(
        secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256
    ).hexdigest()


def verify_synthesia(
    headers: httpx.Headers,
    raw_body: bytes,
    keys: list[str],
    query: Mapping[str, str] | None = None,
    now: float | None = None,
) -> None:
    """Check ``Synthesia-Signature`` over timestamp + body, and that the timestamp is fresh."""
    signature = headers.get(SYNTHESIA_SIGNATURE_HEADER, "").strip()
    timestamp = headers.get(SYNTHESIA_TIMESTAMP_HEADER, "").strip()
    if not signature or not timestamp:
        raise CallbackRejected("synthesia: the callback has no signature or timestamp")
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise CallbackRejected("synthesia: the callback timestamp is not a number") from None
    clock = time.time() if now is None else now
    if abs(clock - sent_at) > TIMESTAMP_TOLERANCE_SECONDS:
        raise CallbackRejected("synthesia: the callback timestamp is too old or in the future")
    expected = [synthesia_signature(key, timestamp, raw_body) for key in keys]
    if not any(_same_hex(_strip_scheme(signature), e) for e in expected):
        raise CallbackRejected("synthesia: the callback signature does not match")


def parse_synthesia(body: dict[str, Any]) -> RenderJob:
    """``{type: "video.completed"|"video.failed", data: <video>}`` -> RenderJob."""
    kind = body.get("type")
    if kind not in SYNTHESIA_EVENTS:
        raise CallbackIgnored(f"synthesia: event {str(kind)[:80]!r} is not a video completion")
    video = body.get("data")
    if not isinstance(video, dict) or not _text(video.get("id")):
        raise InvalidInput("synthesia: the event has no video", {"data.id": "missing"})
    vendor_status = _text(video.get("status")) or (
        "complete" if kind == "video.completed" else "error"
    )
    status = synthesia.VIDEO_STATUS.get(vendor_status, JobStatus.RUNNING)
    if kind == "video.failed" and status is not JobStatus.FAILED:
        status = JobStatus.FAILED
    failed = status is JobStatus.FAILED
    thumbnail = video.get("thumbnail")
    error = video.get("error")
    reason = error.get("message") if isinstance(error, dict) else error
    return RenderJob(
        provider="synthesia",
        id=str(video["id"]),
        status=status,
        vendor_status=vendor_status,
        result_url=_text(video.get("download")) if status is JobStatus.SUCCEEDED else None,
        thumbnail_url=_text(thumbnail.get("image")) if isinstance(thumbnail, dict) else None,
        duration_seconds=synthesia._seconds(video.get("duration")),
        failure_reason=(str(reason) if reason else f"video {vendor_status}") if failed else None,
        failure_code=vendor_status if failed else None,
        raw=body,
    )


# -- D-ID -------------------------------------------------------------------------------------


def new_callback_token() -> str:
    """An unguessable token (256 bits) for D-ID callback URLs; store it as the D-ID secret."""
    return secrets_module.token_hex(32)


def d_id_callback_url(hooks_url: str, token: str) -> str:
    """The ``webhook`` to give D-ID: our ``/hooks/d-id`` URL with the token in its query."""
    separator = "&" if "?" in hooks_url else "?"
    return f"{hooks_url}{separator}{urlencode({D_ID_TOKEN_PARAM: token})}"


def verify_d_id(
    headers: httpx.Headers,
    raw_body: bytes,
    keys: list[str],
    query: Mapping[str, str] | None = None,
    now: float | None = None,
) -> None:
    """D-ID signs nothing: the URL's token must equal one of ``keys`` (constant time)."""
    token = (query or {}).get(D_ID_TOKEN_PARAM, "")
    if not token:
        raise CallbackRejected("d-id: the callback URL has no token")
    if not any(hmac.compare_digest(token.encode(), key.encode()) for key in keys):
        raise CallbackRejected("d-id: the callback token does not match")


def parse_d_id(body: dict[str, Any]) -> RenderJob:
    """The talk or clip object D-ID POSTs -> RenderJob (final states only)."""
    job_id = _text(body.get("id"))
    if job_id is None:
        raise InvalidInput("d-id: the callback has no talk or clip id", {"id": "missing"})
    vendor_status = _text(body.get("status")) or ""
    status = d_id.TALK_STATUS.get(vendor_status, JobStatus.RUNNING)
    if not status.is_final:
        raise CallbackIgnored(f"d-id: {job_id} is still {vendor_status or 'unknown'}")
    code = reason = None
    if status is JobStatus.FAILED:
        code, reason = d_id._error_parts(body.get("error"))
        code = code or vendor_status
        reason = reason or f"{job_id} {vendor_status}"
    duration = body.get("duration")
    return RenderJob(
        provider="d-id",
        id=job_id,
        status=status,
        vendor_status=vendor_status,
        result_url=_text(body.get("result_url")) if status is JobStatus.SUCCEEDED else None,
        thumbnail_url=_text(body.get("thumbnail_url")),
        duration_seconds=float(duration) if isinstance(duration, int | float) else None,
        failure_reason=reason,
        failure_code=code,
        raw=body,
    )


_HANDLERS: dict[str, _Handler] = {
    "heygen": _Handler(verify_heygen, parse_heygen),
    "synthesia": _Handler(verify_synthesia, parse_synthesia),
    "d-id": _Handler(verify_d_id, parse_d_id),
}

#: Sources :func:`handle_render_callback` accepts.
SOURCES: tuple[str, ...] = tuple(_HANDLERS)


# -- helpers ----------------------------------------------------------------------------------


def _secrets_for(source: str, secrets: Secrets) -> list[str]:
    """The non-empty secrets configured for ``source``; none configured is a rejection."""
    raw = secrets.get(source)
    values = [raw] if isinstance(raw, str) else list(raw or [])
    keys = [v for v in values if isinstance(v, str) and v]
    if not keys:
        raise CallbackRejected(f"{source}: no callback secret is configured")
    return keys


def _json_object(raw_body: bytes, source: str) -> dict[str, Any]:
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(f"{source}: the callback body is not JSON", {"body": "JSON"}) from None
    if not isinstance(body, dict):
        raise InvalidInput(f"{source}: the callback body is not an object", {"body": "object"})
    return body


def _strip_scheme(signature: str) -> str:
    """``sha256=<hex>`` -> ``<hex>``; a bare hex digest is returned as it is."""
    signature = signature.strip()
    return signature.split("=", 1)[1] if signature.lower().startswith("sha256=") else signature


def _same_hex(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.lower().encode(), expected.encode())


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
