"""Download a finished render's result into the media store, safely.

Vendor result URLs come from a vendor's response, so they are treated like user-supplied URLs:
every hop goes through the SSRF guard (:func:`arkyra.http.ssrf.guarded_client`; the loopback
sandbox is reachable only with ``Settings.ssrf_allow_loopback``), no credentials are sent, and
redirects are followed by hand (at most :data:`MAX_REDIRECTS`, each one re-checked).

The body is streamed and the download stops as soon as it passes the store's size limit; the
media type must be on the store's allow-list before a byte is read. Result URLs are pre-signed
and expire: a 403/404/410 from the media host, or a job already past ``result_expires_at``,
re-fetches the job for a fresh URL and tries once more.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

import httpx

from arkyra.config import Settings
from arkyra.errors import JobFailed, ProviderError, Transient, UnsafeURL
from arkyra.http.ssrf import (
    REDIRECT_STATUSES,
    GuardedTransport,
    check_url,
    guarded_client,
    safe_origin,
)
from arkyra.media.store import (
    ALLOWED_CONTENT_TYPES,
    MediaStore,
    StoredMedia,
    normalise_content_type,
)
from arkyra.providers.jobs import JobStatus, RenderJob

MAX_REDIRECTS = 5

#: Statuses a media host gives for an expired (or revoked) pre-signed URL.
EXPIRED_STATUSES = frozenset({403, 404, 410})

#: File suffix for each allowed media type.
SUFFIXES: dict[str, str] = {
    "video/mp4": ".mp4",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/pcm": ".pcm",
    "image/png": ".png",
    "image/jpeg": ".jpg",
}

#: CDNs often label files ``application/octet-stream``; then the URL's suffix names the type.
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", ""})
_BY_SUFFIX: dict[str, str] = {
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}


class JobSource(Protocol):
    """What :func:`fetch_result` needs from a provider: its id, settings and a job re-fetch."""

    identifier: str
    settings: Settings

    async def get_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob: ...


class ExpiredURL(Exception):
    """The media host refused a result URL the way it refuses expired ones (internal)."""


async def fetch_result(
    provider: JobSource,
    credentials: Mapping[str, str],
    job: RenderJob,
    store: MediaStore,
    *,
    client: httpx.AsyncClient | None = None,
) -> StoredMedia:
    """Download ``job``'s result into ``store`` and return the stored file.

    ``client`` must be a guarded client (default: a new one from the provider's settings).
    Raises ``JobFailed`` for a job without a result, a refused media type, an oversized file
    or a URL still refused after one refresh; ``Transient`` for 5xx/429 or a broken connection;
    ``UnsafeURL`` when the URL (or a redirect) points somewhere the guard refuses.
    """
    if job.status is not JobStatus.SUCCEEDED:
        raise JobFailed(
            f"job {job.id} has no result (it is {job.status})",
            provider=provider.identifier,
            details={"job_id": job.id},
        )
    own_client = client is None
    http = client or guarded_client(provider.settings)
    try:
        refreshed = False
        if job.result_url is None or _is_expired(job):
            job = await _refresh(provider, credentials, job)
            refreshed = True
        while True:
            try:
                return await _download(http, job, store, provider.identifier)
            except ExpiredURL as exc:
                if refreshed:
                    raise JobFailed(
                        f"the result URL is still refused after a refresh ({exc})",
                        provider=provider.identifier,
                        details={"job_id": job.id},
                    ) from None
                job = await _refresh(provider, credentials, job)
                refreshed = True
    finally:
        if own_client:
            await http.aclose()


def _is_expired(job: RenderJob, now: datetime | None = None) -> bool:
    expires = job.result_expires_at
    if expires is None:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return expires <= (now or datetime.now(UTC))


async def _refresh(
    provider: JobSource, credentials: Mapping[str, str], job: RenderJob
) -> RenderJob:
    """Re-fetch the job: vendors re-sign result URLs on every status read."""
    fresh = await provider.get_job(credentials, job.id)
    if fresh.status is not JobStatus.SUCCEEDED or not fresh.result_url:
        raise JobFailed(
            f"job {job.id} no longer offers a result (it is {fresh.status})",
            provider=provider.identifier,
            details={"job_id": job.id},
        )
    return fresh


async def _download(
    client: httpx.AsyncClient, job: RenderJob, store: MediaStore, provider: str
) -> StoredMedia:
    """Stream the result (following checked redirects) into the store."""
    url = job.result_url
    assert url is not None
    guard = _guard(client)
    for _hop in range(MAX_REDIRECTS + 1):
        await check_url(url, allow_loopback=guard.allow_loopback, resolver=guard.resolver)
        try:
            async with client.stream("GET", url) as response:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    url = str(response.url.join(location))
                    continue
                _check_status(response, provider)
                media_type = _media_type(response, provider)
                data = await _read_bounded(response, store.max_bytes, provider)
        except httpx.TransportError as exc:
            raise Transient(
                f"could not download the result from {safe_origin(url)} ({type(exc).__name__})",
                provider=provider,
            ) from None
        return await store.put_bytes(data, content_type=media_type, suffix=SUFFIXES[media_type])
    raise UnsafeURL(f"refusing {safe_origin(job.result_url)}: more than {MAX_REDIRECTS} redirects")


def _guard(client: httpx.AsyncClient) -> GuardedTransport:
    """The client's SSRF guard; result URLs are never fetched through an unguarded client."""
    guard = getattr(client, "_transport", None)
    if not isinstance(guard, GuardedTransport):
        raise TypeError("fetch_result needs a client from arkyra.http.ssrf.guarded_client")
    return guard


def _check_status(response: httpx.Response, provider: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status in EXPIRED_STATUSES:
        raise ExpiredURL(f"HTTP {status} from {safe_origin(response.url)}")
    message = f"could not download the result (HTTP {status} from {safe_origin(response.url)})"
    if status >= 500 or status == 429:
        raise Transient(message, provider=provider, status=status)
    raise JobFailed(message, provider=provider, status=status)


def _media_type(response: httpx.Response, provider: str) -> str:
    """The allowed media type of the response (by header, or by URL suffix for octet-streams)."""
    declared = normalise_content_type(response.headers.get("content-type", ""))
    if declared in _GENERIC_TYPES:
        suffix = posixpath.splitext(response.url.path)[1].lower()
        declared = _BY_SUFFIX.get(suffix, declared)
    if declared not in ALLOWED_CONTENT_TYPES:
        raise JobFailed(
            f"the result's media type {declared or '(none)'!r} is not allowed",
            provider=provider,
            details={"content_type": declared},
        )
    return declared


async def _read_bounded(response: httpx.Response, limit: int, provider: str) -> bytes:
    """Read the body, stopping (and failing) as soon as it passes ``limit`` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, provider)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # as they arrive: stop right at the limit
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, provider)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, provider: str) -> ProviderError:
    return JobFailed(
        f"the result is larger than the media limit of {limit} bytes", provider=provider
    )
