"""Failover over real loopback HTTP, and what an open breaker costs.

The first provider (``openai``) is dead: it answers 503, or nothing listens on its port. The
request must still succeed through the next one (``mistral``), both real OpenAI-compatible
providers on the router's own client (:mod:`arkyra.router.transport`). Once the breaker is open
the dead provider is skipped without a call, and the router's own time for the request
(``RouteInfo.overhead_ms``: total minus time waiting on providers) stays under 5 ms, as does
the end-to-end difference to the healthy path: medians over many requests, both paths
measured side by side in the same test, so a busy machine cannot make it flaky. Also: a
keep-alive connection the upstream hung up on is replaced, and a stream fails over the same way.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arkyra.providers.ai._base import ChatMessage, CompletionRequest
from arkyra.router.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from arkyra.router.chain import ChainConfig
from arkyra.router.service import Router
from arkyra.router.transport import build_router_client
from tests.conftest import make_settings

SAMPLES = 41
OPEN_BREAKER_BUDGET_MS = 5.0

ANSWER = {
    "id": "chatcmpl-loopback",
    "object": "chat.completion",
    "created": 0,
    "model": "mistral-small-latest",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
UNAVAILABLE = {"error": {"message": "overloaded", "type": "server_error", "code": None}}


class Upstream:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 answering every request with one status
    (``hang_up``: close the connection after each answer, without saying so; ``sse``: answer
    with a chunked event stream)."""

    def __init__(self, status: int, body: dict, *, hang_up: bool = False, sse: bool = False):
        self.status = status
        self.body = json.dumps(body).encode()
        self.hang_up = hang_up
        self.sse = sse
        self.calls = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def start(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = b"OK" if self.status == 200 else b"Service Unavailable"
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.calls += 1
                if self.sse:
                    await self._stream(writer)
                else:
                    writer.write(
                        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s"
                        % (self.status, reason, len(self.body), self.body)
                    )
                await writer.drain()
                if self.hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for text in ("Hel", "lo"):
            chunk = {**ANSWER, "object": "chat.completion.chunk", "usage": None}
            chunk["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
            event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        done = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def refused_url() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
async def healthy() -> AsyncIterator[Upstream]:
    upstream = await Upstream(200, ANSWER).start()
    yield upstream
    await upstream.stop()


@pytest.fixture
async def sick() -> AsyncIterator[Upstream]:
    upstream = await Upstream(503, UNAVAILABLE).start()
    yield upstream
    await upstream.stop()


def ask() -> CompletionRequest:
    return CompletionRequest(messages=[ChatMessage(role="user", content="hello")], max_tokens=16)


async def router_for(tmp_path: Path, first_url: str, second_url: str) -> Router:
    """openai (first, at ``first_url``) then mistral (at ``second_url``), platform keys, one
    attempt per provider (so a 503 moves on at once), a breaker that opens on one failure."""
    settings = make_settings(
        tmp_path,
        openai_api_key="sk-loopback-openai",
        mistral_api_key="loopback-mistral-key",
        openai_base_url=first_url,
        mistral_base_url=second_url,
        http_max_attempts=1,
    )
    return Router(
        settings,
        chain=ChainConfig(default=["openai", "mistral"]),
        breaker=CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown_seconds=600)),
        client=build_router_client(settings),
    )


async def close(router: Router) -> None:
    await router.aclose()
    await router._client.aclose()


async def medians(router: Router, provider: str) -> tuple[float, float]:
    """Median ``overhead_ms`` and median wall time (ms) of :data:`SAMPLES` requests, each
    answered by ``provider``."""
    overheads, walls = [], []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        _, route = await router.complete("org", ask())
        walls.append((time.perf_counter() - started) * 1000)
        assert route.provider == provider
        overheads.append(route.overhead_ms)
    return statistics.median(overheads), statistics.median(walls)


async def test_a_503_fails_over_to_the_next_provider(
    tmp_path: Path, healthy: Upstream, sick: Upstream
) -> None:
    router = await router_for(tmp_path, sick.url, healthy.url)
    try:
        completion, route = await router.complete("org", ask())
    finally:
        await close(router)
    assert completion.content == "hi"
    assert route.provider == "mistral"
    assert route.attempts[0].provider == "openai"
    assert route.attempts[0].status == 503
    assert route.attempts[-1].outcome == "ok"
    assert (sick.calls, healthy.calls) == (1, 1)


async def test_a_refused_connection_fails_over_to_the_next_provider(
    tmp_path: Path, healthy: Upstream
) -> None:
    router = await router_for(tmp_path, refused_url(), healthy.url)
    try:
        completion, route = await router.complete("org", ask())
    finally:
        await close(router)
    assert completion.content == "hi"
    assert route.provider == "mistral"
    assert route.attempts[0].provider == "openai"
    assert route.attempts[0].outcome != "ok"
    assert healthy.calls == 1


async def test_an_open_breaker_skips_the_dead_provider_for_under_5_ms(
    tmp_path: Path, healthy: Upstream, sick: Upstream
) -> None:
    router = await router_for(tmp_path, sick.url, healthy.url)
    baseline = await router_for(tmp_path, healthy.url, healthy.url)
    try:
        _, tripping = await router.complete("org", ask())  # the failure that opens it
        assert tripping.attempts[0].status == 503
        assert (await router.breaker.state("openai"))["state"] == BreakerState.OPEN.value
        calls_before = sick.calls

        healthy_ms, healthy_wall = await medians(baseline, "openai")  # openai answers itself
        open_ms, open_wall = await medians(router, "mistral")
        _, route = await router.complete("org", ask())
    finally:
        await close(router)
        await close(baseline)

    assert sick.calls == calls_before  # not one more call to the dead provider
    assert route.attempts[0].provider == "openai"
    assert route.attempts[0].outcome == "skipped"
    assert route.attempts[0].reason == "circuit open"
    assert open_ms < OPEN_BREAKER_BUDGET_MS, (open_ms, healthy_ms)
    assert open_ms - healthy_ms < OPEN_BREAKER_BUDGET_MS, (open_ms, healthy_ms)
    # End to end too: skipping the dead provider costs (far) less than 5 ms over the healthy
    # path to the same upstream, measured side by side.
    assert open_wall - healthy_wall < OPEN_BREAKER_BUDGET_MS, (open_wall, healthy_wall)


async def test_a_connection_the_upstream_closed_while_idle_is_replaced(tmp_path: Path) -> None:
    """Keep-alive reuse never hands out a connection the server has hung up on."""
    upstream = await Upstream(200, ANSWER, hang_up=True).start()
    router = await router_for(tmp_path, upstream.url, upstream.url)
    try:
        for _ in range(3):
            _, route = await router.complete("org", ask())
            assert route.provider == "openai"
            await asyncio.sleep(0.01)  # let the server's FIN arrive
    finally:
        await close(router)
        await upstream.stop()
    assert (upstream.calls, upstream.connections) == (3, 3)


async def test_a_stream_fails_over_on_the_router_client(tmp_path: Path, sick: Upstream) -> None:
    """Chunked SSE through the router's own transport, after a 503 from the first provider."""
    upstream = await Upstream(200, ANSWER, sse=True).start()
    router = await router_for(tmp_path, sick.url, upstream.url)
    try:
        for _ in range(3):
            stream = await router.stream("org", ask())
            text = "".join([chunk.delta async for chunk in stream if chunk.delta])
            assert text == "Hello"
            assert stream.route.provider == "mistral"
    finally:
        await close(router)
        await upstream.stop()
    assert (sick.calls, upstream.calls) == (1, 3)  # the breaker opened after the first 503
