"""Flow parameters and step results.

Parameters are pydantic models, so the Prefect UI renders them as a form and a deployment's
``parameters`` in ``prefect.yaml`` are validated before a run starts. Results are pydantic models
too: they are persisted (the cache of paid work) and summarised in the run's artifact.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# -- parameters -------------------------------------------------------------------------------


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Integration(_Params):
    """One connected integration: the provider and the integration id (its credential block).

    ``integration_id`` may be empty for AI models, which then use the platform's own key.
    ``options`` are settings only this provider understands (an avatar id, a voice id, a model).
    """

    identifier: str = Field(description="Provider identifier, e.g. 'heygen'.", min_length=1)
    integration_id: str | None = Field(
        default=None, description="Integration id from `arkyra integrations list`."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific options, e.g. avatar_id, voice_id."
    )

    @property
    def label(self) -> str:
        return self.identifier


def _non_empty_chain(chain: list[Integration]) -> list[Integration]:
    if not chain:
        raise ValueError("give at least one provider")
    return chain


class ContentSource(_Params):
    """Where the content comes from and what to fetch there."""

    integration: Integration = Field(description="A content source (notion, airtable, ...).")
    query: dict[str, Any] | str | None = Field(
        default=None,
        description="What the source's send_data takes, e.g. {'id': '<database id>'}.",
    )
    max_items: int = Field(default=10, ge=1, le=500, description="Process at most this many.")


class ScriptSettings(_Params):
    """How each item becomes a script: an AI model chain, or the item's own text."""

    providers: list[Integration] = Field(
        default_factory=list,
        description="AI models in fallback order (glm, openai, claude, mistral); empty: no AI.",
    )
    instructions: str = Field(
        default=(
            "Write a spoken script of about {words} words for a short video presenting the "
            "content below. Plain sentences only: no headings, lists or stage directions."
        ),
        description="The system prompt; {words} is replaced by target_words.",
    )
    target_words: int = Field(default=120, ge=10, le=2000)
    max_tokens: int = Field(default=600, ge=16, le=8000)
    temperature: float | None = Field(default=0.4, ge=0, le=2)
    max_source_chars: int = Field(default=12_000, ge=100, le=200_000)
    use_router: bool = Field(
        default=False,
        description=(
            "Ask the AI router (breakers, budgets, usage rows) once per item; it falls back "
            "over these providers in-process instead of through task retries."
        ),
    )


class VideoSettings(_Params):
    """Render a video of the script with the first provider that works."""

    providers: list[Integration] = Field(
        description="Video providers in fallback order, each with its options (avatar_id, ...)."
    )
    title_prefix: str = Field(default="", max_length=100)
    test: bool = Field(default=False, description="Ask vendors for a free, watermarked render.")

    @field_validator("providers")
    @classmethod
    def check_providers(cls, chain: list[Integration]) -> list[Integration]:
        return _non_empty_chain(chain)


class VoiceSettings(_Params):
    """Synthesise the script as audio with the first provider that works."""

    providers: list[Integration] = Field(
        description="Voice providers in fallback order, each with its voice_id option."
    )
    language: str | None = Field(default=None, max_length=20)
    speed: float | None = Field(default=None, gt=0, le=4)

    @field_validator("providers")
    @classmethod
    def check_providers(cls, chain: list[Integration]) -> list[Integration]:
        return _non_empty_chain(chain)


class RunOptions(_Params):
    """How the run behaves: fan-out width, provider limits, cache refresh."""

    max_concurrency: int = Field(default=4, ge=1, le=64, description="Items in flight at once.")
    fan_out: Literal["async", "task_runner"] = Field(
        default="async",
        description=(
            "async: items run as coroutines in the flow's process; task_runner: each item is a "
            "submitted task, so a DaskTaskRunner spreads items over a cluster."
        ),
    )
    provider_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Concurrent calls per provider, e.g. {'heygen': 2}; created on first use.",
    )
    refresh: bool = Field(
        default=False, description="Ignore cached renders and pay for new ones (use with care)."
    )


class HookEvent(_Params):
    """The incoming webhook that started the run (filled in by the deployment trigger)."""

    source: str = ""
    delivery_id: str = ""
    type: str = ""
    entity_id: str | None = None


class MetricsSource(_Params):
    """An analytics source (ga4, posthog or amplitude) and the query it runs."""

    integration: Integration
    query: dict[str, Any] | str | None = Field(
        default=None, description="The source's send_data input (None: its default report)."
    )
    period_days: int = Field(default=7, ge=1, le=90)


class DigestSettings(_Params):
    """The AI-written digest of the metrics comparison."""

    providers: list[Integration] = Field(default_factory=list)
    instructions: str = Field(
        default=(
            "You write a short weekly analytics digest for a content team. Use the table of "
            "metrics (this period vs the previous one). Three to six plain sentences; name the "
            "biggest change first."
        )
    )
    max_tokens: int = Field(default=500, ge=16, le=8000)


# -- results ----------------------------------------------------------------------------------


class Attempt(BaseModel):
    """One provider attempt of a fallback chain."""

    number: int
    provider: str
    ok: bool
    error: str | None = None
    message: str | None = None


class StepResult(BaseModel):
    """What a paid step produced and who produced it."""

    kind: Literal["script", "video", "voice", "delivery", "digest"]
    provider: str
    attempts: list[Attempt] = Field(default_factory=list)
    cost_usd: Decimal | None = None
    output: str | None = Field(default=None, description="A URL or a local path.")
    text: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    cached: bool = False

    @property
    def fallback_path(self) -> str:
        """``glm ✗ → openai ✓``: the chain as it ran."""
        if not self.attempts:
            return self.provider + (" (cached)" if self.cached else "")
        marks = [f"{a.provider} {'✓' if a.ok else '✗'}" for a in self.attempts]
        return " → ".join(marks) + (" (cached)" if self.cached else "")


class ItemOutcome(BaseModel):
    """One content item through the pipeline: every step, or the error that stopped it."""

    item_id: str
    title: str
    ok: bool
    steps: list[StepResult] = Field(default_factory=list)
    error: str | None = None
    failed_step: str | None = None

    @property
    def cost_usd(self) -> Decimal:
        return sum((s.cost_usd or Decimal(0) for s in self.steps if not s.cached), Decimal(0))


class RunSummary(BaseModel):
    """What a pipeline run did, as returned by the flow and shown in its artifact."""

    flow: str
    organization_id: str
    items: list[ItemOutcome] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return sum(1 for i in self.items if i.ok)

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if not i.ok)

    @property
    def cost_usd(self) -> Decimal:
        return sum((i.cost_usd for i in self.items), Decimal(0))


def content_hash(*parts: Any) -> str:
    """A stable SHA-256 over JSON-able parts (dict keys sorted): the basis of cache keys."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
