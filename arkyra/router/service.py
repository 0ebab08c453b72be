"""The AI router: one request, a chain of providers, and the bookkeeping around each attempt.

For each planned candidate (see :mod:`arkyra.router.chain`) the router checks, just before the
call: a larger context window after a ``ContextTooLong``, a cool-down after an exhausted balance
or a rejected key, credentials (the organization's own key first, else the platform's), the
circuit breaker, and the organization's budget (the worst case is reserved). Then it calls the
provider (tenacity already retried ``Transient`` errors inside ``provider.request``) and lets the
error class decide:

- ``Transient``: move on;  ``RateLimited``: wait once when Retry-After is short, else move on;
- ``QuotaExhausted`` / ``InvalidCredentials``: cool that key down, move on at once;
- ``ContextTooLong``: move on to a model with a larger window;
- ``BadRequest`` / ``ContentRejected``: fail fast.

Every attempt writes one usage row (in the background), feeds the metrics and the breaker, and
settles or releases its reservation off the hot path. When nothing succeeds,
:class:`AllProvidersFailed` lists every attempt and skip with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from arkyra.config import Settings, get_settings
from arkyra.db.session import Database
from arkyra.errors import (
    ContextTooLong,
    InvalidCredentials,
    NotFound,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers.ai._base import (
    BaseAIProvider,
    Completion,
    CompletionRequest,
    StreamChunk,
    Usage,
)
from arkyra.providers.base import get_provider
from arkyra.router import metrics
from arkyra.router.breaker import Admission, CircuitBreaker
from arkyra.router.chain import Candidate, ChainConfig, Plan, plan
from arkyra.router.idempotency import (
    Claim,
    IdempotencyIncomplete,
    IdempotencyStore,
    request_fingerprint,
)
from arkyra.router.pricing import CHARS_PER_TOKEN, PriceTable, default_price_table
from arkyra.router.quota import QuotaExceeded, QuotaService, Reservation
from arkyra.router.usage import UsageWriter

log = logging.getLogger(__name__)

CredentialsFor = Callable[[str], Mapping[str, str] | Awaitable[Mapping[str, str] | None] | None]


@dataclass
class Attempt:
    """One attempt (``attempt_no`` set) or one skipped candidate (``outcome == "skipped"``)."""

    provider: str
    model: str | None
    outcome: str
    reason: str | None = None
    attempt_no: int | None = None
    status: int | None = None
    latency_ms: float | None = None
    cost_usd: str = "0"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RouteInfo:
    """How a request was answered: every attempt, the provider used, cost and our overhead."""

    request_id: str
    provider: str | None
    model: str | None
    attempts: list[Attempt]
    cost: Decimal
    price_version: str
    overhead_ms: float
    credential_source: str | None = None
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost"] = str(self.cost)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteInfo:
        values = dict(data)
        values["attempts"] = [Attempt(**a) for a in values.get("attempts", [])]
        values["cost"] = Decimal(str(values.get("cost", "0")))
        return cls(**values)


class AllProvidersFailed(ProviderError):
    """Every candidate failed or was skipped; ``attempts`` says which and why."""

    allows_fallback = False

    def __init__(self, attempts: list[Attempt]) -> None:
        self.attempts = attempts
        summary = "; ".join(
            f"{a.provider}: {a.outcome}" + (f" ({a.reason})" if a.reason else "") for a in attempts
        )
        super().__init__(
            f"every AI provider failed: {summary or 'no provider configured'}",
            provider="router",
            details={"attempts": [a.to_dict() for a in attempts]},
        )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["attempts"] = [a.to_dict() for a in self.attempts]
        return data


@dataclass(frozen=True)
class RouterPolicy:
    rate_limit_max_wait: float = 2.0
    quota_exhausted_cooldown: float = 300.0
    invalid_credentials_cooldown: float = 600.0


@dataclass
class _Won:
    """A candidate that answered (or started streaming): what finishing the attempt needs."""

    candidate: Candidate
    reservation: Reservation | None
    source: str
    attempt_no: int
    started: float
    result: Any
    attempts: list[Attempt]
    upstream: float


@dataclass
class _Context:
    organization_id: str
    request: CompletionRequest
    request_id: str
    credentials_for: CredentialsFor | None
    started: float = field(default_factory=time.perf_counter)


class Router:
    """Routes completions across AI providers with fallback, breakers, quotas and usage."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db: Database | None = None,
        providers: Mapping[str, BaseAIProvider] | None = None,
        chain: ChainConfig | None = None,
        breaker: CircuitBreaker | None = None,
        quota: QuotaService | None = None,
        usage: UsageWriter | None = None,
        idempotency: IdempotencyStore | None = None,
        prices: PriceTable | None = None,
        policy: RouterPolicy | None = None,
        client: Any = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.db = db
        self.chain = chain or ChainConfig()
        self.breaker = breaker or CircuitBreaker.from_url(self.settings.redis_url)
        self.quota = quota if quota is not None else (QuotaService(db) if db else None)
        self.usage = (
            usage
            if usage is not None
            else (
                UsageWriter(db, spill_path=self.settings.home / "ai-usage-spill.jsonl")
                if db
                else None
            )
        )
        self.idempotency = (
            idempotency if idempotency is not None else (IdempotencyStore(db) if db else None)
        )
        self.prices = prices or default_price_table()
        self.policy = policy or RouterPolicy()
        self._client = client
        self._providers: dict[str, BaseAIProvider | None] = dict(providers or {})
        self._fixed_providers = providers is not None
        self._cooldowns: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- providers and credentials -----------------------------------------------------------------

    def providers(self) -> dict[str, BaseAIProvider]:
        """The chain's providers that exist (missing modules are skipped, not fatal)."""
        for identifier in self.chain.identifiers():
            if identifier not in self._providers and not self._fixed_providers:
                try:
                    provider = get_provider(identifier, settings=self.settings, client=self._client)
                except NotFound:
                    provider = None
                if provider is not None and not isinstance(provider, BaseAIProvider):
                    provider = None
                self._providers[identifier] = provider
        return {k: v for k, v in self._providers.items() if v is not None}

    async def _credentials(
        self, identifier: str, credentials_for: CredentialsFor | None
    ) -> tuple[Mapping[str, str] | None, str]:
        if credentials_for is not None:
            own = credentials_for(identifier)
            if inspect.isawaitable(own):
                own = await own
            if own:
                return own, "organization"
        key = self.settings.platform_key(identifier)
        return ({"api_key": key}, "platform") if key else (None, "none")

    def _cooling(self, organization_id: str, identifier: str, source: str) -> bool:
        owner = organization_id if source == "organization" else "platform"
        until = self._cooldowns.get((owner, identifier))
        if until is None:
            return False
        if time.monotonic() >= until:
            self._cooldowns.pop((owner, identifier), None)
            return False
        return True

    async def _cool_down(self, organization_id: str, identifier: str, source: str, seconds: float):
        owner = organization_id if source == "organization" else "platform"
        self._cooldowns[(owner, identifier)] = time.monotonic() + seconds
        if source == "platform":
            await self.breaker.trip(identifier, seconds)  # shared with other processes

    # -- background work ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("router background task failed: %r", task.exception())

    async def drain(self) -> None:
        """Wait for settlements, breaker updates and usage rows (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.usage is not None:
            await self.usage.flush()
        if self.quota is not None:
            await self.quota.flush()

    async def aclose(self) -> None:
        """Finish background work, persist budgets (leases given back) and usage rows."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.quota is not None:
            await self.quota.aclose()
        if self.usage is not None:
            await self.usage.aclose()
        await self.breaker.aclose()

    # -- the public API ----------------------------------------------------------------------------

    async def complete(
        self,
        organization_id: str,
        request: CompletionRequest,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        credentials_for: CredentialsFor | None = None,
    ) -> tuple[Completion, RouteInfo]:
        """Answer ``request`` from the first provider that can; see the module docstring."""
        ctx = _Context(organization_id, request, request_id or uuid.uuid4().hex, credentials_for)
        if idempotency_key and self.idempotency is not None:
            return await self._complete_once(ctx, idempotency_key)
        return await self._complete(ctx)

    async def _complete_once(self, ctx: _Context, key: str) -> tuple[Completion, RouteInfo]:
        async def call() -> dict[str, Any]:
            completion, route = await self._complete(ctx)
            return {"completion": completion.model_dump(mode="json"), "route": route.to_dict()}

        stored, replayed = await self.idempotency.run(  # type: ignore[union-attr]
            ctx.organization_id, key, _fingerprint(ctx.request), call
        )
        if replayed:
            return _replay(ctx, stored)
        return Completion.model_validate(stored["completion"]), RouteInfo.from_dict(stored["route"])

    async def _complete(self, ctx: _Context) -> tuple[Completion, RouteInfo]:
        async def call(candidate: Candidate, credentials: Mapping[str, str]) -> Completion:
            return await candidate.provider.generate_completion(credentials, candidate.request)

        won = await self._route(ctx, call)
        completion: Completion = won.result
        latency = time.perf_counter() - won.started
        cost = self._finish_success(ctx, won, completion.usage, latency)
        return completion, self._route_info(ctx, won, cost)

    async def stream(
        self,
        organization_id: str,
        request: CompletionRequest,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        credentials_for: CredentialsFor | None = None,
    ) -> RoutedStream | ReplayedStream:
        """Start a streamed answer. Fallback happens until the first chunk arrives, never
        after it; awaiting this raises (AllProvidersFailed, QuotaExceeded, ...) before any
        chunk is produced, so an API can still answer with a proper error status.

        With ``idempotency_key`` the key is claimed first: a stored answer (streamed or not)
        comes back as a :class:`ReplayedStream` without calling anyone; a duplicate still in
        flight raises ``IdempotencyInProgress`` at once; a failure before the stream starts
        releases the key. How the stream's own end settles the key: :class:`RoutedStream`."""
        if not request.stream:
            request = request.model_copy(update={"stream": True})
        ctx = _Context(organization_id, request, request_id or uuid.uuid4().hex, credentials_for)
        claim: Claim | None = None
        if idempotency_key and self.idempotency is not None:
            stored, claim = await self.idempotency.begin(
                organization_id, idempotency_key, _fingerprint(request), wait=False
            )
            if claim is None:
                return ReplayedStream(*_replay(ctx, stored or {}))

        async def call(
            candidate: Candidate, credentials: Mapping[str, str]
        ) -> tuple[StreamChunk, AsyncIterator[StreamChunk]]:
            iterator = aiter(candidate.provider.stream_completion(credentials, candidate.request))
            try:
                first = await anext(iterator)
            except StopAsyncIteration:
                raise Transient(
                    "the stream ended before its first chunk", provider=candidate.identifier
                ) from None
            return first, iterator

        try:
            won = await self._route(ctx, call)
        except BaseException as exc:
            if claim is not None:  # nothing was streamed: the client may retry with the key
                await self._settle_key(self.idempotency.release(claim, exc))  # type: ignore[union-attr]
            raise
        return RoutedStream(self, ctx, won, claim)

    async def _settle_key(self, work: Coroutine[Any, Any, None]) -> None:
        """Run an idempotency write to its end even if this request is cancelled meanwhile."""
        task = self._spawn(work)
        with contextlib.suppress(Exception):
            await asyncio.shield(task)  # a failure is logged by _task_done

    # -- the attempt loop --------------------------------------------------------------------------

    async def _route(
        self, ctx: _Context, call: Callable[[Candidate, Mapping[str, str]], Awaitable[Any]]
    ) -> _Won:
        budget = await self.quota.view(ctx.organization_id) if self.quota else None
        the_plan = plan(
            ctx.request, self.providers(), config=self.chain, prices=self.prices, budget=budget
        )
        attempts = [Attempt(s.provider, s.model, "skipped", s.reason) for s in the_plan.skipped]
        if the_plan.refused_by_budget:
            raise self._budget_refusal(ctx, the_plan, budget)
        upstream = 0.0
        attempt_no = 0
        context_floor = 0
        quota_error: QuotaExceeded | None = None
        for candidate in the_plan.candidates:
            identifier = candidate.identifier

            def skip(reason: str, candidate: Candidate = candidate) -> None:
                attempts.append(Attempt(candidate.identifier, candidate.model, "skipped", reason))

            if candidate.info.context_window <= context_floor:
                skip(f"context window {candidate.info.context_window} is not larger")
                continue
            credentials, source = await self._credentials(identifier, ctx.credentials_for)
            if credentials is None:
                skip("no credentials (no connected key and no platform key)")
                continue
            if self._cooling(ctx.organization_id, identifier, source):
                skip(f"cooling down ({source} key)")
                continue
            admission = await self.breaker.allow(identifier)
            if admission is Admission.REJECTED:
                skip("circuit open")
                continue
            reservation = None
            if self.quota is not None:
                try:
                    reservation = await self.quota.reserve(
                        ctx.organization_id,
                        candidate.worst_case_usd,
                        candidate.worst_case_tokens,
                        request_id=ctx.request_id,
                    )
                except QuotaExceeded as exc:
                    quota_error = exc
                    skip(f"budget: {exc}")
                    continue
            waited = False
            while True:
                attempt_no += 1
                started = time.perf_counter()
                try:
                    result = await call(candidate, credentials)
                except ProviderError as exc:
                    error: ProviderError = exc
                except asyncio.CancelledError:
                    self._release(reservation)
                    raise
                except Exception as exc:  # a provider bug must not end the chain
                    log.exception("provider %s raised %s", identifier, type(exc).__name__)
                    error = Transient(f"unexpected {type(exc).__name__}", provider=identifier)
                else:
                    upstream += time.perf_counter() - started
                    return _Won(
                        candidate, reservation, source, attempt_no, started, result, attempts,
                        upstream,
                    )  # fmt: skip
                latency = time.perf_counter() - started
                upstream += latency
                attempts.append(self._record_failure(ctx, candidate, attempt_no, error, latency))
                await self.breaker.record_outcome(identifier, error)
                wait = getattr(error, "retry_after", None)
                if (
                    isinstance(error, RateLimited)
                    and not waited
                    and wait is not None
                    and wait <= self.policy.rate_limit_max_wait
                ):
                    waited = True
                    await asyncio.sleep(wait)
                    upstream += wait
                    if (await self.breaker.allow(identifier)).admitted:
                        continue
                break
            self._release(reservation)
            if not error.allows_fallback:
                raise error
            if isinstance(error, QuotaExhausted):
                await self._cool_down(
                    ctx.organization_id, identifier, source, self.policy.quota_exhausted_cooldown
                )
            elif isinstance(error, InvalidCredentials):
                await self._cool_down(
                    ctx.organization_id,
                    identifier,
                    source,
                    self.policy.invalid_credentials_cooldown,
                )
            elif isinstance(error, ContextTooLong):
                context_floor = max(context_floor, candidate.info.context_window)
        if attempt_no == 0 and quota_error is not None:
            raise quota_error
        raise AllProvidersFailed(attempts)

    def _budget_refusal(self, ctx: _Context, the_plan: Plan, budget: Any) -> QuotaExceeded:
        cheapest = min((s for s in the_plan.skipped if s.budget), key=lambda s: s.worst_case_usd)
        if budget.remaining_usd is not None and cheapest.worst_case_usd > budget.remaining_usd:
            return QuotaExceeded(
                "usd",
                organization_id=ctx.organization_id,
                limit=budget.limit_usd,
                used=budget.limit_usd - budget.remaining_usd,
                requested=cheapest.worst_case_usd,
                resets_at=budget.resets_at,
            )
        return QuotaExceeded(
            "tokens",
            organization_id=ctx.organization_id,
            limit=budget.limit_tokens,
            used=budget.limit_tokens - budget.remaining_tokens,
            requested=cheapest.worst_case_tokens,
            resets_at=budget.resets_at,
        )

    # -- bookkeeping -------------------------------------------------------------------------------

    def _release(self, reservation: Reservation | None) -> None:
        if reservation is not None and self.quota is not None:
            self._spawn(self.quota.release(reservation))

    def _usage_row(
        self,
        ctx: _Context,
        candidate: Candidate,
        attempt_no: int,
        latency: float,
        *,
        usage: Usage | None = None,
        cost: Decimal = Decimal(0),
        error: BaseException | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if self.usage is None:
            return
        usage = usage or Usage()
        metadata: dict[str, Any] = {"cache_write_tokens": usage.cache_write_tokens}
        if usage.reasoning_tokens:
            metadata["reasoning_tokens"] = usage.reasoning_tokens
        if error is not None:
            metadata["error"] = str(error)[:500]
        if extra:
            metadata.update(extra)
        self.usage.record(
            {
                "organization_id": ctx.organization_id,
                "request_id": ctx.request_id,
                "attempt_no": attempt_no,
                "provider": candidate.identifier,
                "model": candidate.model,
                "task_type": ctx.request.task_type,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cached_tokens": usage.cached_tokens,
                "total_tokens": usage.total_tokens,
                "cost_usd": cost,
                "price_version": self.prices.version,
                "latency_ms": latency * 1000.0,
                "success": error is None,
                "error_class": type(error).__name__ if error is not None else None,
                "metadata": metadata,
                "created_at": datetime.now(UTC),
            }
        )

    def _record_failure(
        self,
        ctx: _Context,
        candidate: Candidate,
        attempt_no: int,
        error: ProviderError,
        latency: float,
    ) -> Attempt:
        outcome = type(error).__name__
        metrics.record(candidate.identifier, latency, ok=False, outcome=outcome)
        self._usage_row(ctx, candidate, attempt_no, latency, error=error)
        return Attempt(
            candidate.identifier,
            candidate.model,
            outcome,
            error.message,
            attempt_no,
            error.status,
            round(latency * 1000, 3),
        )

    def _finish_success(
        self,
        ctx: _Context,
        won: _Won,
        usage: Usage,
        latency: float,
        *,
        error: BaseException | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Decimal:
        candidate = won.candidate
        cost = self.prices.cost(candidate.identifier, candidate.model, usage).amount
        ok = error is None
        metrics.record(
            candidate.identifier,
            latency,
            ok=ok,
            outcome="ok" if ok else type(error).__name__,
            cost=cost,
        )
        self._usage_row(
            ctx, candidate, won.attempt_no, latency, usage=usage, cost=cost, error=error,
            extra=extra,
        )  # fmt: skip
        if ok:
            if not self.breaker.record_success_now(candidate.identifier):  # Redis: background
                self._spawn(self.breaker.record(candidate.identifier, ok=True))
        elif error is not None:
            self._spawn(self.breaker.record_outcome(candidate.identifier, error))
        if won.reservation is not None and self.quota is not None:
            self.quota.settle_now(won.reservation, cost, usage.total_tokens)  # in memory
        won.attempts.append(
            Attempt(
                candidate.identifier,
                candidate.model,
                "ok" if ok else type(error).__name__,
                None if ok else str(error)[:300],
                won.attempt_no,
                None,
                round(latency * 1000, 3),
                str(cost),
            )
        )
        return cost

    def _route_info(self, ctx: _Context, won: _Won, cost: Decimal) -> RouteInfo:
        total = time.perf_counter() - ctx.started
        return RouteInfo(
            request_id=ctx.request_id,
            provider=won.candidate.identifier,
            model=won.candidate.model,
            attempts=won.attempts,
            cost=cost,
            price_version=self.prices.version,
            overhead_ms=round(max(0.0, total - won.upstream) * 1000, 3),
            credential_source=won.source,
        )

    # -- status ------------------------------------------------------------------------------------

    async def provider_status(self, *, probe: bool = False, credentials_for: Any = None) -> list:
        """Breaker state, metrics and (when ``probe``) a free health check per provider."""
        out = []
        providers = self.providers()
        for identifier in sorted(self.chain.identifiers()):
            provider = providers.get(identifier)
            entry: dict[str, Any] = {
                "provider": identifier,
                "available": provider is not None,
                "breaker": await self.breaker.state(identifier),
                "metrics": metrics.provider_metrics(identifier),
                "platform_key": self.settings.platform_key(identifier) is not None,
            }
            if provider is not None:
                entry["default_model"] = provider.default_model
                if probe:
                    credentials, _ = await self._credentials(identifier, credentials_for)
                    entry["healthy"] = await _probe(provider, credentials) if credentials else None
            out.append(entry)
        return out


def _fingerprint(request: CompletionRequest) -> str:
    """The request's identity for Idempotency-Key. Streamed or not is how the answer is
    delivered, not what is asked, so both share a key (and old non-streamed hashes stay)."""
    if request.stream:
        request = request.model_copy(update={"stream": False})
    return request_fingerprint(request.model_dump(mode="json"))


def _replay(ctx: _Context, stored: Mapping[str, Any]) -> tuple[Completion, RouteInfo]:
    """A stored answer as it is replayed (never billed again); a cut-off stream is refused."""
    if stored.get("incomplete"):
        raise IdempotencyIncomplete(dict(stored))
    route = RouteInfo.from_dict(stored["route"])
    route.replayed = True
    route.overhead_ms = round((time.perf_counter() - ctx.started) * 1000, 3)
    return Completion.model_validate(stored["completion"]), route


async def _probe(provider: BaseAIProvider, credentials: Mapping[str, str]) -> bool:
    try:
        return bool(await provider.is_healthy(credentials))
    except Exception:
        return False


class RoutedStream:
    """A started stream: iterate it for chunks; ``route`` is known once the first one arrived.

    After the first chunk there is no fallback: an error mid-stream is recorded on this attempt
    and raised to the consumer. Usage comes from the final chunk (or, if the vendor sent none, an
    estimate from the characters received); the reservation is settled when the stream ends.

    With an Idempotency-Key ``claim``, the end of the stream settles the key:

    - it ended normally: the assembled answer is stored like a non-streamed one (before the
      consumer gets past the last chunk, so a retry after ``[DONE]`` replays);
    - it failed or the consumer went away before any content was handed out: the key is
      released, so a retry runs (the vendor may have billed the prompt of this attempt, which
      is recorded; the client pays for one answer);
    - it failed or the consumer went away after content was handed out: the vendor billed
      every token it produced, so the usage is recorded and the partial answer is stored as
      ``incomplete``. A retry with the key is refused with that partial answer
      (:class:`IdempotencyIncomplete`) instead of silently buying a second answer; a new key
      asks again. Replaying the fragment as if it were the answer would be worse: it looks
      like success.
    """

    def __init__(
        self, router: Router, ctx: _Context, won: _Won, claim: Claim | None = None
    ) -> None:
        self._router = router
        self._ctx = ctx
        self._won = won
        self._claim = claim
        self.route = router._route_info(ctx, won, Decimal(0))
        self._finished = False
        self._usage: Usage | None = None
        self._chars = 0
        self._parts: list[str] = []  # kept only when the answer is stored under a key
        self._finish_reason: str | None = None
        self._chunk_model: str | None = None
        self._settling: asyncio.Task[Any] | None = None

    @property
    def provider(self) -> str:
        return self._won.candidate.identifier

    @property
    def model(self) -> str:
        return self._won.candidate.model

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        first, rest = self._won.result
        error: BaseException | None = None
        try:
            chunk = first
            while True:
                self._take(chunk)
                yield chunk
                try:
                    chunk = await anext(rest)
                except StopAsyncIteration:
                    break
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(error)
        if self._settling is not None:  # stored before the consumer can say "done"
            with contextlib.suppress(Exception):
                await asyncio.shield(self._settling)

    def _take(self, chunk: StreamChunk) -> None:
        self._chars += len(chunk.delta)
        if chunk.usage is not None:
            self._usage = chunk.usage
        if self._claim is not None:
            if chunk.delta:
                self._parts.append(chunk.delta)
            self._finish_reason = chunk.finish_reason or self._finish_reason
            self._chunk_model = chunk.model or self._chunk_model

    async def aclose(self) -> None:
        """Stop early (client went away): the attempt is still settled and recorded, with the
        characters received so far."""
        if not self._finished:
            self._finish(asyncio.CancelledError())
        _, rest = self._won.result
        closer = getattr(rest, "aclose", None)
        if closer is not None:
            await closer()

    def _finish(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        extra = None
        usage = self._usage
        if usage is None:
            # No usage from the vendor: bill our input bound and the characters we saw.
            usage = Usage(
                input_tokens=self._won.candidate.worst_case_tokens
                - min(self._ctx.request.max_tokens, self._won.candidate.info.max_output_tokens),
                output_tokens=-(-self._chars // CHARS_PER_TOKEN),
            )
            extra = {"usage_estimated": True}
        latency = time.perf_counter() - self._won.started
        cancelled = isinstance(error, GeneratorExit | asyncio.CancelledError)
        if cancelled:
            extra = {**(extra or {}), "cancelled": True}
        cost = self._router._finish_success(
            self._ctx, self._won, usage, latency, error=None if cancelled else error, extra=extra
        )
        self.route.cost = cost
        self.route.attempts = self._won.attempts
        if self._claim is not None:
            self._settle_key(usage, error, cancelled)

    def _settle_key(self, usage: Usage, error: BaseException | None, cancelled: bool) -> None:
        """Store, mark incomplete or release the key (see the class docstring), in a task of
        its own: this may run while the request is being cancelled."""
        store = self._router.idempotency
        claim = self._claim
        assert store is not None
        assert claim is not None
        outcome = {
            "completion": Completion(
                provider=self.provider,
                model=self._chunk_model or self.model,
                content="".join(self._parts),
                finish_reason=self._finish_reason,
                usage=usage,
                parsed=_parsed(self._ctx.request, self._parts) if error is None else None,
            ).model_dump(mode="json"),
            "route": self.route.to_dict(),
        }
        if error is None and not cancelled:
            work = store.complete(claim, outcome)
        elif self._chars == 0:
            work = store.release(claim, error or asyncio.CancelledError())
        else:
            outcome["incomplete"] = {
                "reason": "client_disconnected" if cancelled else "upstream_error",
                "error": None if cancelled else f"{type(error).__name__}: {error}"[:300],
            }
            work = store.complete(claim, outcome, status="incomplete")
        try:
            self._settling = self._router._spawn(work)
        except RuntimeError:  # no running loop (interpreter shutdown): the claim goes stale
            work.close()
            log.warning("could not settle Idempotency-Key for request %s", self._ctx.request_id)


def _parsed(request: CompletionRequest, parts: list[str]) -> Any:
    """The JSON answer of a JSON-mode stream, as a non-streamed completion would carry it."""
    if request.response_format != "json":
        return None
    try:
        return json.loads("".join(parts))
    except ValueError:
        return None


class ReplayedStream:
    """A stored answer played back as a stream (role, content, finish with usage): no provider
    is called and nothing is billed."""

    def __init__(self, completion: Completion, route: RouteInfo) -> None:
        self.completion = completion
        self.route = route

    @property
    def provider(self) -> str:
        return self.completion.provider

    @property
    def model(self) -> str:
        return self.completion.model

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        model = self.completion.model
        yield StreamChunk(model=model)
        if self.completion.content:
            yield StreamChunk(delta=self.completion.content, model=model)
        yield StreamChunk(
            finish_reason=self.completion.finish_reason or "stop",
            usage=self.completion.usage,
            model=model,
        )

    async def aclose(self) -> None:
        """Nothing to close (the interface of :class:`RoutedStream`)."""
