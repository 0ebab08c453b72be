"""Scripts and digests: AI completions over a model chain, cached by content and prompt.

:func:`complete` is the one place a completion is requested; it calls the AI provider
directly (credentials from the integration's block, a slot of the provider's concurrency
limit). The fallback across models is the task's retries (``arkyra.pipelines.fallback``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from arkyra.errors import BadRequest
from arkyra.pipelines.fallback import current_attempts, last_in_chain, pick, record_attempt
from arkyra.pipelines.limits import provider_slot
from arkyra.pipelines.models import (
    Attempt,
    Integration,
    ScriptSettings,
    StepResult,
    content_hash,
)
from arkyra.pipelines.resilience import call_again
from arkyra.pipelines.runtime import get_runtime
from arkyra.providers.ai._base import BaseAIProvider, ChatMessage, Completion, CompletionRequest
from arkyra.providers.content.items import ContentItem
from arkyra.tasks._paid import paid_cache, paid_task_options


async def complete(
    organization_id: str,
    integration: Integration,
    request: CompletionRequest,
    *,
    attempts: int | None = None,
) -> tuple[Completion, Decimal | None]:
    """One completion from one provider, and its cost (None when the price is unknown)."""
    runtime = get_runtime()
    provider = runtime.provider(integration.identifier)
    if not isinstance(provider, BaseAIProvider):
        raise BadRequest("is not an AI model provider", provider=integration.identifier)
    credentials = await runtime.credentials(organization_id, integration)
    if integration.options.get("model"):
        request = request.model_copy(update={"model": str(integration.options["model"])})

    async def ask() -> Completion:
        async with provider_slot(integration.identifier):
            return await provider.generate_completion(credentials, request)

    what = f"{integration.identifier} completion"
    completion = await call_again(
        ask, runtime.retry, replayable=False, what=what, attempts=attempts
    )
    try:
        cost: Decimal | None = provider.estimate_cost(request, usage=completion.usage)
    except Exception:  # no price for this model: the summary shows '-'
        cost = None
    return completion, cost


def _router_chain(chain: Sequence[Integration]) -> list[str]:
    """``identifier`` or ``identifier:model`` per entry, as the router's chain config reads."""
    return [
        f"{i.identifier}:{i.options['model']}" if i.options.get("model") else i.identifier
        for i in chain
    ]


def _default_router(chain: list[str], providers: dict[str, Any]) -> Any:
    """A router with the database behind its budgets and usage rows (worker processes)."""
    from arkyra.db.session import Database
    from arkyra.router.chain import ChainConfig
    from arkyra.router.service import Router

    settings = get_runtime().settings
    return Router(
        settings,
        db=Database.from_settings(settings),
        providers=providers,
        chain=ChainConfig(default=chain),
    )


async def complete_with_router(
    organization_id: str,
    chain: Sequence[Integration],
    request: CompletionRequest,
    *,
    kind: str,
    idempotency_key: str,
) -> StepResult:
    """One routed completion: the router tries the chain; its attempts become the step's."""
    runtime = get_runtime()
    providers = {i.identifier: runtime.provider(i.identifier) for i in chain}
    router = (runtime.router_factory or _default_router)(_router_chain(chain), providers)
    connected = {i.identifier: i for i in chain if i.integration_id}

    async def credentials_for(identifier: str) -> dict[str, str] | None:
        integration = connected.get(identifier)
        if integration is None:
            return None  # the router uses the platform key
        return await runtime.credentials(organization_id, integration)

    try:
        completion, route = await router.complete(
            organization_id,
            request,
            idempotency_key=idempotency_key,
            credentials_for=credentials_for,
        )
    finally:
        await router.aclose()
    attempts = [
        Attempt(
            number=n,
            provider=a.provider,
            ok=a.outcome == "ok",
            error=None if a.outcome == "ok" else a.outcome,
            message=a.reason,
        )
        for n, a in enumerate((a for a in route.attempts if a.outcome != "skipped"), start=1)
    ]
    path = " → ".join(f"{a.provider} {'✓' if a.ok else '✗'}" for a in attempts)
    get_run_logger().info("router answered: %s", path)
    return StepResult(
        kind=kind,  # type: ignore[arg-type]
        provider=route.provider or completion.provider,
        attempts=attempts,
        cost_usd=route.cost,
        text=completion.content.strip(),
        details={"model": completion.model, "request_id": route.request_id, "via": "router"},
    )


def script_request(item: ContentItem, settings: ScriptSettings) -> CompletionRequest:
    """The provider-independent request for one item's script."""
    system = settings.instructions.replace("{words}", str(settings.target_words))
    content = f"# {item.title}\n\n{item.body}"[: settings.max_source_chars]
    return CompletionRequest(
        messages=[
            ChatMessage(role="system", content=system),
            ChatMessage(role="user", content=content),
        ],
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        task_type="script",
    )


def _script_fingerprint(parameters: dict[str, Any]) -> str:
    item: ContentItem = parameters["item"]
    settings: ScriptSettings = parameters["settings"]
    request = script_request(item, settings)
    return content_hash(parameters["organization_id"], request.model_dump(mode="json"))


async def _run_chain(
    organization_id: str, chain: Sequence[Integration], request: CompletionRequest, kind: str
) -> StepResult:
    _, integration = pick(chain)
    try:
        attempts = None if last_in_chain(chain) else 1  # else the next provider is tried
        completion, cost = await complete(organization_id, integration, request, attempts=attempts)
    except Exception as exc:
        record_attempt(integration.identifier, exc)
        raise
    text = completion.content.strip()
    if not text:
        exc = BadRequest("returned an empty answer", provider=integration.identifier)
        record_attempt(integration.identifier, exc)
        raise exc
    record_attempt(integration.identifier)
    return StepResult(
        kind=kind,  # type: ignore[arg-type]
        provider=integration.identifier,
        attempts=current_attempts(),
        cost_usd=cost,
        text=text,
        details={"model": completion.model, "tokens": completion.usage.total_tokens},
    )


@task(
    name="generate_script",
    task_run_name="script {item.id}",
    cache_policy=paid_cache("script", _script_fingerprint),
    **paid_task_options(),
)
async def generate_script(
    organization_id: str, item: ContentItem, settings: ScriptSettings
) -> StepResult:
    """Write the item's spoken script with the first model of the chain that answers."""
    request = script_request(item, settings)
    if settings.use_router:
        key = "script-" + _script_fingerprint(
            {"organization_id": organization_id, "item": item, "settings": settings}
        )
        return await complete_with_router(
            organization_id, settings.providers, request, kind="script", idempotency_key=key
        )
    return await _run_chain(organization_id, settings.providers, request, "script")


def _text_fingerprint(parameters: dict[str, Any]) -> str:
    request: CompletionRequest = parameters["request"]
    return content_hash(parameters["organization_id"], request.model_dump(mode="json"))


@task(
    name="generate_text",
    task_run_name="{kind}",
    cache_policy=paid_cache("text", _text_fingerprint),
    **paid_task_options(),
)
async def generate_text(
    organization_id: str,
    providers: list[Integration],
    request: CompletionRequest,
    kind: str = "digest",
) -> StepResult:
    """Any completion over a model chain (the analytics digest uses it)."""
    return await _run_chain(organization_id, providers, request, kind)
