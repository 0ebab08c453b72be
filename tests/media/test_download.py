"""fetch_result: guarded, streamed, bounded downloads of render results, with one URL refresh.

No real DNS or HTTP: a fake resolver feeds the SSRF guard and ``httpx.MockTransport`` plays the
media host behind it (the guard pins requests to the vetted IP, so routes match on the path).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from arkyra.config import Settings
from arkyra.errors import JobFailed, Transient, UnsafeURL
from arkyra.http.ssrf import guarded_client
from arkyra.media.download import fetch_result
from arkyra.media.store import MediaStore
from arkyra.providers.jobs import JobStatus, RenderJob
from tests.conftest import make_settings

MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200
ADDRESSES = {"cdn.test": "93.184.216.34", "other-cdn.test": "93.184.216.35",
             "evil.test": "10.0.0.5"}  # fmt: skip


class FakeResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        return [ADDRESSES[host]]


class Host:
    """The media host: answers by path; records every request path."""

    def __init__(self, routes: Mapping[str, Callable[[], httpx.Response]]) -> None:
        self.routes = routes
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        assert "authorization" not in request.headers, "no credentials to a media host"
        make = self.routes.get(request.url.path)
        return make() if make else httpx.Response(404, text="no such key")


class FakeProvider:
    """Re-fetching the job gives a fresh URL each time (vendors re-sign on every read)."""

    identifier = "heygen"

    def __init__(self, settings: Settings, fresh_paths: list[str]) -> None:
        self.settings = settings
        self.fresh_paths = fresh_paths
        self.refreshes = 0

    async def get_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        path = self.fresh_paths[min(self.refreshes, len(self.fresh_paths) - 1)]
        self.refreshes += 1
        return finished(f"https://cdn.test{path}")


def finished(url: str | None, **kw: object) -> RenderJob:
    return RenderJob(
        provider="heygen", id="vid_1", status=JobStatus.SUCCEEDED, result_url=url, **kw
    )  # type: ignore[arg-type]


def mp4(body: bytes = MP4, **headers: str) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(
        200, content=body, headers={"content-type": "video/mp4", **headers}
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, sandbox=False)


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media", max_bytes=10_000)


def client_for(settings: Settings, host: Host) -> httpx.AsyncClient:
    return guarded_client(settings, resolver=FakeResolver(), inner=httpx.MockTransport(host))


async def test_downloads_into_the_store(settings: Settings, store: MediaStore) -> None:
    host = Host({"/v/1.mp4": mp4()})
    provider = FakeProvider(settings, ["/v/unused.mp4"])

    async with client_for(settings, host) as client:
        stored = await fetch_result(
            provider, {}, finished("https://cdn.test/v/1.mp4"), store, client=client
        )

    assert stored.path.read_bytes() == MP4
    assert (stored.content_type, stored.path.suffix, stored.size) == ("video/mp4", ".mp4", len(MP4))
    assert stored.sha256 == hashlib.sha256(MP4).hexdigest()
    assert provider.refreshes == 0


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_an_expired_url_is_refreshed_once(
    settings: Settings, store: MediaStore, status: int
) -> None:
    host = Host({"/v/old.mp4": lambda: httpx.Response(status), "/v/new.mp4": mp4()})
    provider = FakeProvider(settings, ["/v/new.mp4"])

    async with client_for(settings, host) as client:
        stored = await fetch_result(
            provider, {}, finished("https://cdn.test/v/old.mp4"), store, client=client
        )

    assert stored.path.read_bytes() == MP4
    assert provider.refreshes == 1
    assert host.paths == ["/v/old.mp4", "/v/new.mp4"]


async def test_a_url_refused_after_the_refresh_fails(settings: Settings, store: MediaStore) -> None:
    host = Host({"/v/old.mp4": lambda: httpx.Response(403)})
    provider = FakeProvider(settings, ["/v/also-gone.mp4"])

    async with client_for(settings, host) as client:
        with pytest.raises(JobFailed, match="after a refresh"):
            await fetch_result(
                provider, {}, finished("https://cdn.test/v/old.mp4"), store, client=client
            )

    assert provider.refreshes == 1, "retried once, not forever"
    assert host.paths == ["/v/old.mp4", "/v/also-gone.mp4"]


async def test_a_job_past_its_expiry_is_refreshed_before_any_download(
    settings: Settings, store: MediaStore
) -> None:
    host = Host({"/v/new.mp4": mp4()})
    provider = FakeProvider(settings, ["/v/new.mp4"])
    expired = finished(
        "https://cdn.test/v/old.mp4", result_expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )

    async with client_for(settings, host) as client:
        await fetch_result(provider, {}, expired, store, client=client)

    assert host.paths == ["/v/new.mp4"]
    assert provider.refreshes == 1


async def test_a_job_without_a_url_is_refreshed_and_an_unfinished_one_refused(
    settings: Settings, store: MediaStore
) -> None:
    host = Host({"/v/new.mp4": mp4()})
    provider = FakeProvider(settings, ["/v/new.mp4"])
    async with client_for(settings, host) as client:
        await fetch_result(provider, {}, finished(None), store, client=client)
        running = RenderJob(provider="heygen", id="vid_1", status=JobStatus.RUNNING)
        with pytest.raises(JobFailed, match="no result"):
            await fetch_result(provider, {}, running, store, client=client)
    assert provider.refreshes == 1


@pytest.mark.parametrize("content_type", ["text/html", "application/json", "video/webm", ""])
async def test_media_types_outside_the_allow_list_are_refused(
    settings: Settings, store: MediaStore, content_type: str
) -> None:
    host = Host(
        {
            "/v/1.bin": lambda: httpx.Response(
                200, content=MP4, headers={"content-type": content_type}
            )
        }
    )
    async with client_for(settings, host) as client:
        with pytest.raises(JobFailed, match="not allowed"):
            await fetch_result(
                FakeProvider(settings, ["/x"]),
                {},
                finished("https://cdn.test/v/1.bin"),
                store,
                client=client,
            )
    assert not store.root.exists() or not any(store.root.iterdir())


async def test_octet_stream_is_typed_by_the_url_suffix(
    settings: Settings, store: MediaStore
) -> None:
    host = Host({"/v/1.mp4": mp4(**{"content-type": "application/octet-stream"})})
    async with client_for(settings, host) as client:
        stored = await fetch_result(
            FakeProvider(settings, ["/x"]),
            {},
            finished("https://cdn.test/v/1.mp4?sig=abc"),
            store,
            client=client,
        )
    assert stored.content_type == "video/mp4"


async def test_streaming_stops_at_the_size_limit(settings: Settings, store: MediaStore) -> None:
    chunks_sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(1000):
            chunks_sent += 1
            yield b"\x00" * 1000

    host = Host(
        {
            "/v/big.mp4": lambda: httpx.Response(
                200, content=endless(), headers={"content-type": "video/mp4"}
            )
        }
    )
    async with client_for(settings, host) as client:
        with pytest.raises(JobFailed, match="larger than the media limit"):
            await fetch_result(
                FakeProvider(settings, ["/x"]),
                {},
                finished("https://cdn.test/v/big.mp4"),
                store,
                client=client,
            )
    assert chunks_sent < 20, "stopped soon after the limit instead of reading everything"


async def test_a_declared_oversized_length_is_refused_before_reading(
    settings: Settings, store: MediaStore
) -> None:
    host = Host({"/v/big.mp4": mp4(b"x" * 20_000)})
    async with client_for(settings, host) as client:
        with pytest.raises(JobFailed, match="larger than the media limit"):
            await fetch_result(
                FakeProvider(settings, ["/x"]),
                {},
                finished("https://cdn.test/v/big.mp4"),
                store,
                client=client,
            )


@pytest.mark.parametrize(
    ("status", "error"), [(500, Transient), (503, Transient), (429, Transient), (400, JobFailed)]
)
async def test_other_failures(
    settings: Settings, store: MediaStore, status: int, error: type[Exception]
) -> None:
    host = Host({"/v/1.mp4": lambda: httpx.Response(status)})
    provider = FakeProvider(settings, ["/x"])
    async with client_for(settings, host) as client:
        with pytest.raises(error):
            await fetch_result(
                provider, {}, finished("https://cdn.test/v/1.mp4"), store, client=client
            )
    assert provider.refreshes == 0


async def test_redirects_are_followed_and_checked(settings: Settings, store: MediaStore) -> None:
    host = Host(
        {
            "/v/1.mp4": lambda: httpx.Response(
                302, headers={"location": "https://other-cdn.test/v/real.mp4"}
            ),
            "/v/real.mp4": mp4(),
            "/v/evil.mp4": lambda: httpx.Response(
                302, headers={"location": "http://evil.test/admin"}
            ),
            "/v/meta.mp4": lambda: httpx.Response(
                302, headers={"location": "http://169.254.169.254/latest"}
            ),
        }
    )
    provider = FakeProvider(settings, ["/x"])
    async with client_for(settings, host) as client:
        stored = await fetch_result(
            provider, {}, finished("https://cdn.test/v/1.mp4"), store, client=client
        )
        assert stored.size == len(MP4)
        for path in ("/v/evil.mp4", "/v/meta.mp4"):
            with pytest.raises(UnsafeURL):
                await fetch_result(
                    provider, {}, finished(f"https://cdn.test{path}"), store, client=client
                )
    assert "/admin" not in host.paths
    assert "/latest" not in host.paths


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8710/heygen/media/x.mp4",
        "http://10.1.2.3/x.mp4",
        "https://evil.test/x.mp4",
    ],
)
async def test_unsafe_result_urls_are_refused(
    settings: Settings, store: MediaStore, url: str
) -> None:
    host = Host({})
    async with client_for(settings, host) as client:
        with pytest.raises(UnsafeURL):
            await fetch_result(
                FakeProvider(settings, ["/x"]), {}, finished(url), store, client=client
            )
    assert host.paths == []


async def test_only_guarded_clients_are_accepted(settings: Settings, store: MediaStore) -> None:
    async with httpx.AsyncClient() as plain:
        with pytest.raises(TypeError):
            await fetch_result(
                FakeProvider(settings, ["/x"]),
                {},
                finished("https://cdn.test/v/1.mp4"),
                store,
                client=plain,
            )
