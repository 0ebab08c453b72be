"""What the four AI provider test files (OpenAI, GLM, Claude, Mistral) share.

Only the parts that are the same for every vendor live here: the request builder, data-only SSE,
golden-file loading, the respx exchanges with the completion endpoint, the provider fixtures and
the sandbox end-to-end checks. Vendor error bodies, headers and connection checks stay in each
vendor's file, where the differences are the point of the test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import respx

from arkyra.config import Settings
from arkyra.errors import (
    ContentRejected,
    ContextTooLong,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.ai import BaseAIProvider, Completion, CompletionRequest, StreamChunk
from arkyra.sandbox.state import SandboxState
from tests.conftest import make_settings

P = TypeVar("P", bound=BaseAIProvider)
E = TypeVar("E", bound=BaseException)

GOLDEN = Path(__file__).parent / "golden"

# The structured-output schema the OpenAI and Claude tests ask for.
VIDEO_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "minutes": {"type": "integer"}},
    "required": ["title", "minutes"],
    "additionalProperties": False,
}

# Sandbox fault knobs, each with the taxonomy error the vendor's own error body must map to.
INJECTED_FAULTS = [
    ({"rate_limit_rate": 1, "retry_after_seconds": 0}, RateLimited),
    ({"error_rate": 1, "error_status": 503}, Transient),
    ({"error_rate": 1, "error_status": 500}, Transient),
]

# The sandbox's magic words, each with the taxonomy error a request carrying it must raise.
MAGIC_WORDS = [
    ("[quota]", QuotaExhausted),
    ("[ratelimit]", RateLimited),
    ("[context]", ContextTooLong),
    ("[refuse]", ContentRejected),
]


def ask(text: str = "Say hi", system: str | None = None, **options: Any) -> CompletionRequest:
    """A one-question request, with a system message first when ``system`` is given."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    return CompletionRequest(messages=messages, **options)


def sse(*events: Any) -> str:
    """Data-only server-sent events: dicts as JSON, strings (``[DONE]``) as they are."""
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def golden(name: str) -> Any:
    """A vendor response recorded under ``tests/providers/golden``."""
    return json.loads((GOLDEN / name).read_text())


async def collect(stream: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    """Every chunk of a stream, in order."""
    return [chunk async for chunk in stream]


def assert_secret_free(exc: BaseException, key: str) -> None:
    """The API key appears in neither the message nor the repr of an error."""
    assert key not in str(exc)
    assert key not in repr(exc)


def assert_ai_catalogue_entry(kind: type[BaseAIProvider], identifier: str, base_url: str) -> None:
    """What every AI vendor's catalogue entry holds: its name, the AI category, a single
    ``api_key`` field, the real vendor URL and a default model among its models."""
    assert kind.identifier == identifier
    assert kind.category == "ai"
    assert [f.name for f in kind.fields] == ["api_key"]
    assert kind.default_base_url == base_url
    assert kind.default_model in kind.models


# -- fixtures ----------------------------------------------------------------------------------


def ai_provider_fixtures(identifier: str, kind: type[P]) -> tuple[Any, Any, Any]:
    """The ``settings``, ``real`` and ``sandbox`` fixtures for one AI vendor.

    Assign them at module level (``settings, real, sandbox = ai_provider_fixtures(...)``) so
    pytest finds them by name; ``settings`` also feeds the suite's ``provider_factory``.
    """

    @pytest.fixture
    def settings(tmp_path: Path) -> Settings:
        """One attempt per call, so each magic error in the sandbox is seen exactly once."""
        return make_settings(tmp_path, http_max_attempts=1)

    @pytest.fixture
    async def real(settings: Settings) -> AsyncIterator[P]:
        """The provider pointed at the real vendor URL (respx intercepts), one attempt per call."""
        async with httpx.AsyncClient() as client:
            provider = get_provider(
                identifier, settings=settings.model_copy(update={"sandbox": False}), client=client
            )
            assert isinstance(provider, kind)
            yield provider

    @pytest.fixture
    def sandbox(provider_factory: Callable[[str], ThirdPartyProvider]) -> P:
        """The provider talking to the in-process sandbox emulator."""
        provider = provider_factory(identifier)
        assert isinstance(provider, kind)
        return provider

    return settings, real, sandbox


# -- respx exchanges with the completion endpoint ----------------------------------------------


@dataclass(frozen=True)
class ChatRoute:
    """A vendor's completion endpoint under respx, and the credentials each call sends.

    Each method mocks one POST to ``url``, makes one call and returns what the test asserts on.
    """

    url: str
    creds: Mapping[str, str]

    async def complete(
        self, real: BaseAIProvider, request: CompletionRequest, **response: Any
    ) -> tuple[Completion, httpx.Request]:
        """The completion for a 200 answer built from ``response``, and the request sent."""
        with respx.mock() as mock:
            route = mock.post(self.url).respond(200, **response)
            completion = await real.generate_completion(self.creds, request)
        return completion, route.calls.last.request

    async def raised(
        self, real: BaseAIProvider, expected: type[E], status: int, **response: Any
    ) -> E:
        """The error ``generate_completion`` raises for a ``status`` answer (``expected`` or a
        subclass)."""
        with respx.mock() as mock:
            mock.post(self.url).respond(status, **response)
            with pytest.raises(expected) as caught:
                await real.generate_completion(self.creds, ask())
        return caught.value

    async def streamed(
        self, real: BaseAIProvider, **response: Any
    ) -> tuple[list[StreamChunk], httpx.Request]:
        """The chunks of a streamed call answered 200 with ``response``, and the request sent."""
        with respx.mock() as mock:
            route = mock.post(self.url).respond(200, **response)
            chunks = await collect(real.stream_completion(self.creds, ask(stream=True)))
        return chunks, route.calls.last.request

    async def raised_before_first_chunk(
        self, real: BaseAIProvider, expected: type[E], status: int, **response: Any
    ) -> E:
        """The error a stream raises for a ``status`` answer, before it yields anything."""
        with respx.mock() as mock:
            mock.post(self.url).respond(status, **response)
            with pytest.raises(expected) as caught:
                await anext(real.stream_completion(self.creds, ask(stream=True)))
        return caught.value


# -- the sandbox, end to end -------------------------------------------------------------------


async def assert_sandbox_streams(
    sandbox: BaseAIProvider, creds: Mapping[str, str]
) -> list[StreamChunk]:
    """The emulator streams its answer to "Stream me", ending with a stop and the usage."""
    chunks = await collect(sandbox.stream_completion(creds, ask("Stream me", stream=True)))
    assert "".join(c.delta for c in chunks) == "Sandbox answer to: Stream me"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.output_tokens > 0
    return chunks


async def raised_both_ways(
    sandbox: BaseAIProvider, creds: Mapping[str, str], text: str, expected: type[E]
) -> tuple[E, E]:
    """The errors a plain call and a streamed call with ``text`` raise (``expected`` or a
    subclass): a magic word must fail the same way on both paths."""
    with pytest.raises(expected) as plain:
        await sandbox.generate_completion(creds, ask(text))
    with pytest.raises(expected) as streamed:
        await collect(sandbox.stream_completion(creds, ask(text, stream=True)))
    return plain.value, streamed.value


async def assert_injected_fault_is_mapped(
    sandbox: BaseAIProvider,
    sandbox_state: SandboxState,
    creds: Mapping[str, str],
    knobs: dict[str, Any],
    error_class: type[ProviderError],
) -> None:
    """With the fault ``knobs`` set, a call fails with exactly ``error_class`` and the provider
    reports itself unhealthy."""
    sandbox_state.faults_for(sandbox.identifier).update(knobs)
    with pytest.raises(error_class) as caught:
        await sandbox.generate_completion(creds, ask())
    assert type(caught.value) is error_class
    assert await sandbox.is_healthy(creds) is False
