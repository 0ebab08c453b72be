"""Which providers to try, in which order, for one request.

A chain is an ordered list of entries per task type (``"glm"`` or ``"glm:glm-4.7"`` to pin a
model); the default is GLM, OpenAI, Claude, Mistral. :func:`plan` filters it:

- capability: ``request.needs`` must be within the model's capabilities;
- budget: never plan a call whose worst-case cost (prompt bound + ``max_tokens``) exceeds what is
  left of the organization's USD or token budget; when less than ``near_limit_fraction`` is left,
  try the cheaper candidates first.

Breaker state, cool-downs and credentials are checked by the router just before each call (they
change while a request falls back). The same ``Chain`` drives the router's loop and a Prefect
task whose ``run_count`` picks :meth:`Plan.candidates` ``[run_count - 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from arkyra.errors import ProviderError
from arkyra.providers.ai._base import BaseAIProvider, CompletionRequest, ModelInfo
from arkyra.router.pricing import PriceTable, estimate_input_tokens
from arkyra.router.quota import BudgetView

DEFAULT_CHAIN: tuple[str, ...] = ("glm", "openai", "claude", "mistral")


@dataclass(frozen=True)
class ChainConfig:
    """Chains per task type (``"*"`` or missing: the default chain) and the budget policy."""

    chains: Mapping[str, Sequence[str]] = field(default_factory=dict)
    default: Sequence[str] = DEFAULT_CHAIN
    near_limit_fraction: float = 0.2

    def entries(self, task_type: str) -> list[tuple[str, str | None]]:
        """(provider identifier, pinned model or None) in order."""
        raw = self.chains.get(task_type) or self.chains.get("*") or self.default
        out: list[tuple[str, str | None]] = []
        for entry in raw:
            provider, _, model = entry.partition(":")
            out.append((provider.strip(), model.strip() or None))
        return out

    def identifiers(self) -> set[str]:
        every = [*self.default, *(e for chain in self.chains.values() for e in chain)]
        return {entry.partition(":")[0].strip() for entry in every}


@dataclass(frozen=True)
class Candidate:
    """One planned attempt: the provider, the model, the request to send and its worst case."""

    provider: BaseAIProvider
    model: str
    request: CompletionRequest
    info: ModelInfo
    worst_case_usd: Decimal
    worst_case_tokens: int

    @property
    def identifier(self) -> str:
        return self.provider.identifier


@dataclass(frozen=True)
class Skip:
    provider: str
    model: str | None
    reason: str
    budget: bool = False
    worst_case_usd: Decimal = Decimal(0)
    worst_case_tokens: int = 0


@dataclass
class Plan:
    candidates: list[Candidate]
    skipped: list[Skip]
    input_tokens: int

    @property
    def refused_by_budget(self) -> bool:
        return not self.candidates and any(s.budget for s in self.skipped)

    @property
    def prefect_retries(self) -> int:
        """``retries=`` for a Prefect task that walks this plan (one run per candidate)."""
        return max(0, len(self.candidates) - 1)

    def for_attempt(self, run_count: int) -> Candidate:
        """The candidate for a Prefect task's ``task_run.run_count`` (1-based)."""
        if not 1 <= run_count <= len(self.candidates):
            raise IndexError(f"attempt {run_count} is past the last of {len(self.candidates)}")
        return self.candidates[run_count - 1]


def should_fall_back(error: BaseException) -> bool:
    """Whether the next candidate may succeed where this one failed (Prefect's
    ``retry_condition_fn`` and the router use the same rule: the taxonomy decides)."""
    return isinstance(error, ProviderError) and error.allows_fallback


def model_for(provider: BaseAIProvider, request: CompletionRequest, pinned: str | None) -> str:
    """The chain's pinned model, else the request's model when this provider knows it, else
    the provider's default (a model name of one vendor means nothing to another)."""
    if pinned:
        return pinned
    wanted = request.model
    if wanted and (wanted in provider.models or wanted == provider.default_model):
        return wanted
    return provider.default_model


def _prefer_owner(
    entries: list[tuple[str, str | None]],
    request: CompletionRequest,
    providers: Mapping[str, BaseAIProvider],
) -> list[tuple[str, str | None]]:
    """A request naming a model goes first to the provider that serves it."""
    wanted = request.model
    if not wanted:
        return entries
    for index, (identifier, pinned) in enumerate(entries):
        provider = providers.get(identifier)
        if pinned is None and provider is not None and model_for(provider, request, None) == wanted:
            return [entries[index], *entries[:index], *entries[index + 1 :]]
    return entries


def plan(
    request: CompletionRequest,
    providers: Mapping[str, BaseAIProvider],
    *,
    config: ChainConfig,
    prices: PriceTable,
    budget: BudgetView | None = None,
) -> Plan:
    """The candidates for ``request`` in the order to try them, and why others were skipped."""
    input_tokens = estimate_input_tokens(request)
    candidates: list[Candidate] = []
    skipped: list[Skip] = []
    for identifier, pinned in _prefer_owner(config.entries(request.task_type), request, providers):
        provider = providers.get(identifier)
        if provider is None:
            skipped.append(Skip(identifier, pinned, "provider not available"))
            continue
        model = model_for(provider, request, pinned)
        routed = request if model == request.model else request.model_copy(update={"model": model})
        info = provider.model_info(model)
        if not provider.supports(routed):
            missing = ", ".join(sorted(routed.needs - info.capabilities))
            skipped.append(Skip(identifier, model, f"model lacks capability: {missing}"))
            continue
        max_output = min(routed.max_tokens, info.max_output_tokens)
        worst_usd = prices.worst_case(identifier, model, input_tokens, max_output)
        worst_tokens = input_tokens + max_output
        if budget is not None and not budget.fits(worst_usd, worst_tokens):
            skipped.append(
                Skip(
                    identifier,
                    model,
                    f"worst-case cost {worst_usd} USD / {worst_tokens} tokens exceeds the "
                    f"remaining budget",
                    budget=True,
                    worst_case_usd=worst_usd,
                    worst_case_tokens=worst_tokens,
                )
            )
            continue
        candidates.append(Candidate(provider, model, routed, info, worst_usd, worst_tokens))
    if budget is not None and budget.near_limit(config.near_limit_fraction):
        candidates.sort(key=lambda c: c.worst_case_usd)  # stable: chain order breaks ties
    return Plan(candidates, skipped, input_tokens)
