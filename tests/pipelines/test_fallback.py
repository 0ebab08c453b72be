"""Fallback = task retries over a provider chain: the order, and where the chain stops."""

from __future__ import annotations

import pytest
from prefect import flow, task
from prefect.logging import disable_run_logger

from arkyra.errors import (
    BadRequest,
    ContentRejected,
    InvalidCredentials,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.flows.content import content_pipeline
from arkyra.pipelines.fallback import fallback_allowed, pick
from arkyra.pipelines.models import ContentSource, ScriptSettings, StepResult
from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID
from tests.pipelines.conftest import Pipeline


async def one_item_params(pipeline: Pipeline, script: ScriptSettings) -> dict:
    notion = await pipeline.connect("notion", {"api_key": "secret_sandbox"})
    source = ContentSource(integration=notion, query={"id": CONTENT_DATA_SOURCE_ID}, max_items=1)
    return {"organization_id": pipeline.org, "source": source, "script": script}


def script_step(summary) -> StepResult:  # type: ignore[no-untyped-def]
    return next(s for s in summary.items[0].steps if s.kind == "script")


@pytest.mark.parametrize(
    ("error", "allowed"),
    [
        (Transient("x"), True),
        (RateLimited("x", retry_after=1), True),
        (QuotaExhausted("x"), True),
        (InvalidCredentials("x"), True),
        (ContentRejected("x"), False),
        (BadRequest("x"), False),
        (ValueError("x"), False),
    ],
)
def test_only_errors_that_allow_fallback_move_on(error: Exception, allowed: bool) -> None:
    assert fallback_allowed(error) is allowed


def test_pick_follows_the_attempt_number() -> None:
    chain = ["glm", "openai", "claude"]
    seen: list[tuple[int, str]] = []

    @task(retries=len(chain) - 1, retry_delay_seconds=0)
    def attempt() -> str:
        number, provider = pick(chain)
        seen.append((number, provider))
        if number < 3:
            raise RuntimeError("next")
        return provider

    @flow
    def run() -> str:
        return attempt()

    with disable_run_logger():
        assert pick(chain) == (1, "glm")  # outside a task run: the first provider
    assert run() == "claude"
    assert seen == [(1, "glm"), (2, "openai"), (3, "claude")]


async def test_the_chain_falls_back_in_order_until_one_answers(pipeline: Pipeline) -> None:
    chain = [
        pipeline.fake_ai("glm", fail=QuotaExhausted("balance is empty", provider="glm")),
        pipeline.fake_ai("claude", fail=RateLimited("slow down", provider="claude")),
        pipeline.fake_ai("openai"),
        pipeline.fake_ai("mistral"),
    ]
    summary = await content_pipeline(
        **await one_item_params(pipeline, ScriptSettings(providers=chain))
    )

    assert pipeline.ai_calls == ["glm", "claude", "openai"]
    step = script_step(summary)
    assert step.provider == "openai"
    assert step.text.startswith("Script from openai")
    assert [(a.provider, a.ok, a.error) for a in step.attempts] == [
        ("glm", False, "QuotaExhausted"),
        ("claude", False, "RateLimited"),
        ("openai", True, None),
    ]
    assert step.fallback_path == "glm ✗ → claude ✗ → openai ✓"


async def test_a_refusal_stops_the_chain_at_once(pipeline: Pipeline) -> None:
    chain = [
        pipeline.fake_ai("glm", fail=ContentRejected("policy", provider="glm")),
        pipeline.fake_ai("openai"),
    ]
    params = await one_item_params(pipeline, ScriptSettings(providers=chain))

    with pytest.raises(Exception, match="all 1 items failed"):
        await content_pipeline(**params)

    assert pipeline.ai_calls == ["glm"]


async def test_the_chain_ends_after_its_last_provider(pipeline: Pipeline) -> None:
    chain = [
        pipeline.fake_ai("glm", fail=Transient("down", provider="glm")),
        pipeline.fake_ai("openai", fail=InvalidCredentials("bad key", provider="openai")),
    ]
    params = await one_item_params(pipeline, ScriptSettings(providers=chain))

    state = await content_pipeline(**params, return_state=True)

    assert state.is_failed()
    assert pipeline.ai_calls == ["glm", "openai"]


async def test_the_router_mode_asks_the_router_once_and_reports_its_attempts(
    pipeline: Pipeline,
) -> None:
    from arkyra.router.chain import ChainConfig
    from arkyra.router.service import Router

    built: list[list[str]] = []

    def router(chain: list[str], providers: dict) -> Router:
        built.append(chain)
        return Router(
            pipeline.runtime.settings, providers=providers, chain=ChainConfig(default=chain)
        )

    pipeline.runtime.router_factory = router
    chain = [
        pipeline.fake_ai("glm", fail=QuotaExhausted("balance is empty", provider="glm")),
        pipeline.fake_ai("openai"),
    ]
    script = ScriptSettings(providers=chain, use_router=True)

    summary = await content_pipeline(**await one_item_params(pipeline, script))

    step = script_step(summary)
    assert built == [["glm", "openai"]]  # one task attempt, one routed request
    assert pipeline.ai_calls == ["glm", "openai"]
    assert step.provider == "openai"
    assert step.details["via"] == "router"
    assert [(a.provider, a.ok) for a in step.attempts] == [("glm", False), ("openai", True)]


class FakeVideo:
    """A video provider whose render is accepted and then lost while polling."""

    def __init__(self, identifier: str, calls: list[str]) -> None:
        self.identifier = identifier
        self.calls = calls

    async def send_data(self, credentials: dict, data: dict) -> object:
        from arkyra.providers.jobs import JobStatus, RenderJob

        self.calls.append(f"{self.identifier} submit")
        return RenderJob(provider=self.identifier, id="job-7", status=JobStatus.QUEUED)

    async def wait_for_job(self, credentials: dict, job_id: str) -> object:
        self.calls.append(f"{self.identifier} poll")
        raise Transient("status endpoint down", provider=self.identifier)


async def test_a_render_lost_after_submission_is_not_rendered_elsewhere(
    pipeline: Pipeline,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from arkyra.pipelines.models import VideoSettings

    calls: list[str] = []
    for identifier in ("heygen", "synthesia"):
        pipeline.runtime.overrides[identifier] = FakeVideo(identifier, calls)  # type: ignore[assignment]
    heygen = await pipeline.connect("heygen", {"api_key": "hg_x"})
    synthesia = await pipeline.connect("synthesia", {"api_key": "sy_x"})
    params = await one_item_params(pipeline, ScriptSettings())
    params["video"] = VideoSettings(providers=[heygen, synthesia])

    state = await content_pipeline(**params, return_state=True)

    assert state.is_failed()
    assert calls == ["heygen submit", "heygen poll"]
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    summary = next(a.data for a in artifacts if a.key == "content-pipeline-summary")
    assert "JobDeadlineExceeded: lost track of render job-7" in summary
