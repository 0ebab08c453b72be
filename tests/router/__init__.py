"""Test doubles for the router: scripted fake AI providers under test-only identifiers."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from arkyra.config import Settings
from arkyra.providers.ai._base import (
    BaseAIProvider,
    Completion,
    CompletionRequest,
    ModelInfo,
    StreamChunk,
    Usage,
)
from arkyra.providers.base import AccountInfo, api_key_field
from arkyra.router.pricing import PriceTable

ALL_CAPS = frozenset({"json", "structured_output", "images", "streaming", "tools"})


class MidStream:
    """A script step for streams: send ``chunks`` deltas, then raise ``error``."""

    def __init__(self, error: Exception, chunks: int = 1) -> None:
        self.error = error
        self.chunks = chunks


class FakeAI(BaseAIProvider):
    """A provider whose answers follow a script: each step is "ok", an exception, or MidStream."""

    identifier = "fake"
    title = "Fake AI"
    description = "test double"
    category = "ai"
    fields = (api_key_field(),)
    default_model = "fake-model"

    def __init__(
        self,
        identifier: str,
        *,
        settings: Settings,
        script: list[Any] | None = None,
        context_window: int = 8_192,
        capabilities: frozenset[str] = ALL_CAPS,
        usage: Usage | None = None,
        delay: float = 0.0,
    ) -> None:
        self.identifier = identifier  # type: ignore[misc]
        super().__init__(settings=settings)
        self.default_model = f"{identifier}-model"  # type: ignore[misc]
        self.models = {  # type: ignore[misc]
            self.default_model: ModelInfo(
                id=self.default_model,
                context_window=context_window,
                max_output_tokens=4_096,
                capabilities=capabilities,  # type: ignore[arg-type]
            )
        }
        self.script: deque[Any] = deque(script or [])
        self.usage = usage or Usage(input_tokens=100, cached_tokens=20, output_tokens=50)
        self.delay = delay
        self.calls: list[tuple[dict[str, str], CompletionRequest]] = []

    def _next(self) -> Any:
        return self.script.popleft() if self.script else "ok"

    async def generate_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> Completion:
        self.calls.append((dict(credentials), request))
        if self.delay:
            await asyncio.sleep(self.delay)
        step = self._next()
        if isinstance(step, Exception):
            raise step
        return Completion(
            provider=self.identifier,
            model=request.model or self.default_model,
            content=f"answer from {self.identifier}",
            finish_reason="stop",
            usage=self.usage,
        )

    async def stream_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> AsyncIterator[StreamChunk]:
        self.calls.append((dict(credentials), request))
        step = self._next()
        if isinstance(step, Exception):
            raise step
        if isinstance(step, MidStream):
            for i in range(step.chunks):
                yield StreamChunk(delta=f"part{i} ")
            raise step.error
        for word in ("answer ", "from ", self.identifier):
            yield StreamChunk(delta=word)
        yield StreamChunk(delta="", finish_reason="stop", usage=self.usage)

    async def is_healthy(self, credentials: Mapping[str, str]) -> bool:
        return True

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        return AccountInfo(id="fake", name="Fake")


def fake_prices(rates: dict[str, tuple[str, str]]) -> PriceTable:
    """A price table for fake providers: identifier -> (input, output) USD per 1M tokens."""
    rows = []
    for identifier, (inp, out) in rates.items():
        rows.append(
            {
                "provider": identifier,
                "model": "*",
                "input": inp,
                "output": out,
                "cache_read": None,
                "cache_write": None,
            }
        )
    rows.append({"provider": "*", "model": "*", "input": "1", "output": "1"})
    return PriceTable.from_dict({"version": "test-1", "as_of": "2026-11-25", "rows": rows})


def creds(identifier: str) -> dict[str, str]:
    """credentials_for: every fake provider has an organization key."""
    return {"api_key": f"org-key-{identifier}"}
