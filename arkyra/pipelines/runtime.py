"""What tasks need from the outside world: settings, providers and credentials.

In a worker this is built from the environment (``get_settings()``); the demo and the tests
install their own with :func:`use_runtime` (settings pointed at the sandbox, a fake provider).
Credentials come from the integration's Prefect block (``tp-<integration id>``), checked to
belong to the organization the run is for; AI models without an integration use the
platform's key from settings.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from arkyra.blocks.credentials import block_name_for, block_type_for
from arkyra.config import Settings, get_settings
from arkyra.errors import InvalidCredentials
from arkyra.pipelines.models import Integration
from arkyra.pipelines.resilience import RetryPolicy
from arkyra.providers import ThirdPartyProvider, get_provider

ProviderFactory = Callable[[str], ThirdPartyProvider]
#: Builds an AI router for a chain (``["glm", "openai:gpt-6-luna"]``) and the providers to use.
RouterFactory = Callable[[list[str], dict[str, ThirdPartyProvider]], Any]
AI_PROVIDERS = frozenset({"openai", "glm", "claude", "mistral"})


@dataclass
class PipelineRuntime:
    """Settings plus the two seams tasks use: ``provider()`` and ``credentials()``."""

    settings: Settings
    provider_factory: ProviderFactory | None = None
    overrides: dict[str, ThirdPartyProvider] = field(default_factory=dict)
    router_factory: RouterFactory | None = None
    #: Same-provider retries of provider calls inside a task (arkyra.pipelines.resilience).
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Where provider concurrency limits live: Prefect global limits shared by every worker
    #: ("server"), or semaphores in this process ("process", one-process set-ups only).
    slot_scope: Literal["server", "process"] = "server"
    #: How long loaded credentials are reused (each load is a Prefect API call); a
    #: reconnected or revoked integration is seen again after at most this long.
    credentials_ttl_seconds: float = 30.0
    _credentials: dict[tuple[str, str, str], tuple[float, dict[str, str]]] = field(
        default_factory=dict, init=False, repr=False
    )

    def provider(self, identifier: str) -> ThirdPartyProvider:
        if identifier in self.overrides:
            return self.overrides[identifier]
        if self.provider_factory is not None:
            return self.provider_factory(identifier)
        return get_provider(identifier, settings=self.settings)

    async def credentials(self, organization_id: str, integration: Integration) -> dict[str, str]:
        """The integration's credentials, unwrapped from its block for one provider call.

        A missing block, or one that belongs to another organization or provider, is
        ``InvalidCredentials`` (the chain may fall back; the message names no secret).
        """
        if not integration.integration_id:
            return self._platform_credentials(integration.identifier)
        key = (organization_id, integration.identifier, integration.integration_id)
        cached = self._credentials.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.credentials_ttl_seconds:
            return dict(cached[1])
        credentials = await self._load_credentials(organization_id, integration)
        self._credentials[key] = (time.monotonic(), credentials)
        return dict(credentials)

    async def _load_credentials(
        self, organization_id: str, integration: Integration
    ) -> dict[str, str]:
        assert integration.integration_id is not None
        cls = block_type_for(integration.identifier)
        name = block_name_for(integration.integration_id)
        try:
            block = await cls.aload(name)
        except ValueError:
            block = None
        if (
            block is None
            or block.organization_id != organization_id
            or block.identifier != integration.identifier
        ):
            raise InvalidCredentials(
                f"integration {integration.integration_id} is not connected for this "
                "organization (connect it again)",
                provider=integration.identifier,
            )
        return block.credentials()

    def _platform_credentials(self, identifier: str) -> Mapping[str, str]:
        key = self.settings.platform_key(identifier) if identifier in AI_PROVIDERS else None
        if not key:
            raise InvalidCredentials(
                "no integration id given and no platform key configured "
                f"(set ARKYRA_{identifier.upper().replace('-', '_')}_API_KEY)",
                provider=identifier,
            )
        return {"api_key": key}


_runtime: PipelineRuntime | None = None


def get_runtime() -> PipelineRuntime:
    """The installed runtime, or one built from the environment."""
    global _runtime
    if _runtime is None:
        _runtime = PipelineRuntime(settings=get_settings())
    return _runtime


@contextlib.contextmanager
def use_runtime(runtime: PipelineRuntime) -> Iterator[PipelineRuntime]:
    """Install ``runtime`` for the flows run inside the ``with`` block (same process)."""
    global _runtime
    previous = _runtime
    _runtime = runtime
    try:
        yield runtime
    finally:
        _runtime = previous
