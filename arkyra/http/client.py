"""One shared async httpx client per event loop, with the project's timeouts and limits.

httpx clients are bound to the loop that opened their connections; Prefect tasks, the API and
the CLI may each run their own loop, so the client is cached per running loop.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx

from arkyra import __version__
from arkyra.config import Settings, get_settings

USER_AGENT = f"arkyra-pipelines/{__version__}"

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def build_client(
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A new client with the project's timeouts; redirects are never followed implicitly."""
    settings = settings or get_settings()
    timeout = httpx.Timeout(
        settings.http_timeout_seconds, connect=settings.http_connect_timeout_seconds
    )
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=transport,
    )


def get_client() -> httpx.AsyncClient:
    """The shared client for vendor APIs (operator-configured URLs) on the running loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = build_client()
        _clients[loop] = client
    return client


async def close_client() -> None:
    """Close the running loop's shared client (on shutdown)."""
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()
