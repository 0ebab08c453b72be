"""The AI model provider contract shared by GLM, OpenAI, Claude and Mistral.

Every AI provider is also a :class:`ThirdPartyProvider` (category ``ai``), so an organization can
connect its own key and check it like any other integration. On top of that it speaks one
request/response shape, so the router can fall back across vendors without caring who answers.

Token semantics are normalised here, once: ``Usage.input_tokens`` counts only uncached input,
``cached_tokens`` counts cache reads and ``cache_write_tokens`` cache writes, whatever the vendor
calls them (OpenAI's ``prompt_tokens`` *includes* cached tokens; Anthropic's ``input_tokens``
*excludes* them).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from arkyra.providers.base import ThirdPartyProvider

Role = Literal["system", "user", "assistant", "tool"]
Capability = Literal["json", "structured_output", "images", "streaming", "tools"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None


class CompletionRequest(BaseModel):
    """A provider-independent chat request."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = Field(default=None, description="None: the provider's default model.")
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    response_format: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = Field(
        default=None, description="Structured output: the answer must match this JSON schema."
    )
    schema_name: str = "output"
    stream: bool = False
    task_type: str = "completion"
    user: str | None = None

    @property
    def needs(self) -> set[Capability]:
        needs: set[Capability] = set()
        if self.json_schema is not None:
            needs.add("structured_output")
        elif self.response_format == "json":
            needs.add("json")
        if self.stream:
            needs.add("streaming")
        return needs


class Usage(BaseModel):
    """Normalised token counts (see the module docstring for the semantics)."""

    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cached_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.total_input_tokens + self.output_tokens


class Completion(BaseModel):
    provider: str
    model: str
    content: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    parsed: Any = Field(default=None, description="The JSON answer, for JSON/structured output.")
    vendor_id: str | None = None


class StreamChunk(BaseModel):
    """One piece of a streamed answer; the last chunk carries ``finish_reason`` and ``usage``."""

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None


class ModelInfo(BaseModel):
    id: str
    context_window: int
    max_output_tokens: int
    capabilities: frozenset[Capability] = frozenset({"json", "streaming"})
    free: bool = False


class BaseAIProvider(ThirdPartyProvider):
    """A chat-completion vendor. Subclasses fill in the abstract methods and ``models``."""

    default_model: ClassVar[str]
    models: ClassVar[dict[str, ModelInfo]] = {}

    @property
    def provider_type(self) -> str:
        return self.identifier

    def model_info(self, model: str | None) -> ModelInfo:
        """Known facts about ``model`` (unknown models get conservative defaults)."""
        name = model or self.default_model
        return self.models.get(name) or ModelInfo(
            id=name, context_window=8_192, max_output_tokens=4_096
        )

    def supports(self, request: CompletionRequest) -> bool:
        return request.needs <= self.model_info(request.model).capabilities

    @abstractmethod
    async def is_healthy(self, credentials: Mapping[str, str]) -> bool:
        """A free probe (model list or a free model); never a paid completion."""

    @abstractmethod
    async def generate_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> Completion:
        """One completion; errors are mapped to the taxonomy (``arkyra.errors``)."""

    @abstractmethod
    def stream_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> AsyncIterator[StreamChunk]:
        """The same completion as a stream of chunks (errors before the first chunk raise)."""

    def estimate_cost(self, request: CompletionRequest, *, usage: Usage | None = None) -> Decimal:
        """Worst-case cost before a call (from the prompt size and ``max_tokens``), or the real
        cost of ``usage`` after it, from the router's price table."""
        from arkyra.router.pricing import default_price_table, estimate_input_tokens

        table = default_price_table()
        model = request.model or self.default_model
        if usage is None:
            usage = Usage(
                input_tokens=estimate_input_tokens(request), output_tokens=request.max_tokens
            )
        return table.cost(self.identifier, model, usage).amount

    def get_metrics(self) -> dict[str, Any]:
        """Latency, success rate, error rate and cost for this provider (from the router)."""
        from arkyra.router.metrics import provider_metrics

        return provider_metrics(self.identifier)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> Completion:
        """The main action of an AI provider is a completion."""
        if not isinstance(data, CompletionRequest):
            data = CompletionRequest.model_validate(data)
        return await self.generate_completion(credentials, data)
