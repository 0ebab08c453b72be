"""Pipeline fixtures: the session's Prefect harness, a sandbox on loopback, connected blocks.

Flows run in this process against the harness (``prefect_server`` from tests/conftest.py), and
their providers talk to a sandbox served on a loopback port. Each test gets its own
organization id, so cache keys (which include it) never collide across tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

from arkyra.blocks.credentials import block_name_for, build_block
from arkyra.errors import ProviderError
from arkyra.pipelines.models import Integration
from arkyra.pipelines.runtime import PipelineRuntime, use_runtime
from arkyra.providers.ai._base import BaseAIProvider, Completion, CompletionRequest, Usage
from arkyra.providers.base import AccountInfo
from arkyra.sandbox.server import RunningSandbox, running_sandbox
from arkyra.sandbox.state import SandboxState
from tests.conftest import make_settings

HEYGEN_AVATAR = "Abigail_expressive_2024112501"
HEYGEN_VOICE = "2d5b0e6cf36f460aa7fc47e3eee4ba54"
ELEVENLABS_VOICE = "sbxVoice001abcdefgh"
AI_MODELS = ("openai", "glm", "claude", "mistral")


@pytest.fixture(scope="session")
def prefect_results(
    prefect_server: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Persisted results (the paid-work cache) in a directory of this session."""
    path = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: path}):
        yield path


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    state = SandboxState(seed=7)
    state.store("notion")["seed_rows"] = 3
    state.faults_for("heygen").job_seconds = 0.05
    with running_sandbox(state=state) as running:
        yield running


@pytest.fixture
def org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"


class FakeAI(BaseAIProvider):
    """An AI model whose answers and failures the test scripts; it records every call."""

    default_model = "fake-1"

    def __init__(self, identifier: str, calls: list[str], fail: Any = None) -> None:
        self.identifier = identifier  # type: ignore[misc]
        super().__init__(settings=make_settings(Path("/tmp/arkyra-fake-ai")))
        self.calls = calls
        self.fail = fail

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        return AccountInfo(id=self.identifier, name=self.identifier)

    async def is_healthy(self, credentials: Mapping[str, str]) -> bool:
        return True

    async def generate_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> Completion:
        prompt = str(request.messages[-1].content)
        self.calls.append(self.identifier)
        error = self.fail(prompt) if callable(self.fail) else self.fail
        if isinstance(error, ProviderError):
            raise error
        title = prompt.splitlines()[0].lstrip("# ")
        return Completion(
            provider=self.identifier,
            model=self.default_model,
            content=f"Script from {self.identifier} about {title}. {error or ''}".strip(),
            usage=Usage(input_tokens=100, output_tokens=50),
        )

    def stream_completion(self, credentials: Mapping[str, str], request: CompletionRequest):  # type: ignore[override]
        raise NotImplementedError


@dataclass
class Pipeline:
    """A connected organization: blocks saved, runtime installed, sandbox running."""

    org: str
    sandbox: RunningSandbox
    runtime: PipelineRuntime
    ai_calls: list[str] = field(default_factory=list)

    async def connect(self, identifier: str, credentials: dict[str, str]) -> Integration:
        integration_id = uuid.uuid4().hex[:16]
        block = build_block(
            identifier, organization_id=self.org, integration_id=integration_id,
            credentials=credentials,
        )  # fmt: skip
        await block.asave(block_name_for(integration_id), overwrite=True)
        return Integration(identifier=identifier, integration_id=integration_id)

    def fake_ai(self, identifier: str, fail: Any = None) -> Integration:
        self.runtime.overrides[identifier] = FakeAI(identifier, self.ai_calls, fail)
        return Integration(identifier=identifier)

    @property
    def paid_calls(self) -> dict[str, int]:
        return dict(self.sandbox.state.paid_calls)


@pytest.fixture
async def pipeline(
    prefect_results: Path, sandbox: RunningSandbox, org: str, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    platform_keys = {f"{name}_api_key": f"sk-platform-{name}" for name in AI_MODELS}
    settings = make_settings(
        tmp_path, sandbox_url=sandbox.url, ssrf_allow_loopback=True, **platform_keys
    )
    runtime = PipelineRuntime(settings=settings)
    with use_runtime(runtime):
        yield Pipeline(org=org, sandbox=sandbox, runtime=runtime)
