"""A render (or speech) is paid for at most once, also when its submission was cut off.

The worker stopping between sending a render and noting its job id is played here by a
``send_data`` that raises after (or before) the vendor got the request: the task fails
exactly where a killed worker would stop, leaving the note written before the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from arkyra.errors import InvalidInput, Transient
from arkyra.flows.content import content_pipeline
from arkyra.pipelines.models import (
    ContentSource,
    Integration,
    RunOptions,
    VideoSettings,
    VoiceSettings,
)
from arkyra.providers.audio.elevenlabs import ElevenLabsProvider
from arkyra.providers.jobs import JobStatus, RenderJob
from arkyra.providers.video.heygen import HeyGen
from arkyra.providers.video.synthesia import SynthesiaProvider
from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID
from tests.pipelines.conftest import ELEVENLABS_VOICE, HEYGEN_AVATAR, HEYGEN_VOICE, Pipeline

VENDORS: dict[str, tuple[type, dict[str, str], dict[str, Any]]] = {
    "heygen": (HeyGen, {"api_key": "hg_sandbox"},
               {"avatar_id": HEYGEN_AVATAR, "voice_id": HEYGEN_VOICE}),
    "synthesia": (SynthesiaProvider, {"api_key": "syn_sandbox"},
                  {"avatar": "anna_costume1_cameraA", "background": "green_screen"}),
}  # fmt: skip


class WorkerStopped(Exception):
    """Where the worker would have been killed."""


async def video_params(pipeline: Pipeline, *providers: Integration) -> dict[str, Any]:
    notion = await pipeline.connect("notion", {"api_key": "secret_sandbox"})
    source = ContentSource(integration=notion, query={"id": CONTENT_DATA_SOURCE_ID}, max_items=1)
    video = VideoSettings(providers=list(providers)) if providers else None
    return {"organization_id": pipeline.org, "source": source, "video": video}


async def connect(pipeline: Pipeline, identifier: str) -> Integration:
    _, credentials, options = VENDORS[identifier]
    integration = await pipeline.connect(identifier, credentials)
    integration.options = options
    return integration


def cut_off(
    monkeypatch: pytest.MonkeyPatch, cls: type, *, after_sending: bool, error: Exception
) -> list[str]:
    """Make ``cls.send_data`` raise ``error`` after (or before) the vendor got the request;
    the ids of the jobs the vendor started."""
    started: list[str] = []
    original = cls.send_data

    async def send_data(self: Any, credentials: Mapping[str, str], data: Any) -> RenderJob:
        if after_sending:
            job = await original(self, credentials, data)
            started.append(job.id)
        raise error

    monkeypatch.setattr(cls, "send_data", send_data)
    return started


async def failed_run(params: dict[str, Any]) -> str:
    """Run a pipeline whose every item fails; its summary artifact's text."""
    state = await content_pipeline(**params, return_state=True)
    assert state.is_failed()
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    return next(str(a.data) for a in artifacts if a.key == "content-pipeline-summary")


def video_step(summary: Any) -> Any:
    return next(s for s in summary.items[0].steps if s.kind == "video")


@pytest.mark.parametrize("identifier", list(VENDORS))
async def test_a_render_sent_by_a_stopped_worker_is_found_not_bought_again(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, identifier: str
) -> None:
    params = await video_params(pipeline, await connect(pipeline, identifier))
    started = cut_off(monkeypatch, VENDORS[identifier][0], after_sending=True,
                      error=WorkerStopped("killed after sending"))  # fmt: skip

    first = await failed_run(params)
    monkeypatch.undo()
    second = await content_pipeline(**params)

    assert "WorkerStopped" in first
    assert len(started) == 1
    assert second.items[0].ok
    assert video_step(second).details["job_id"] == started[0]
    assert pipeline.paid_calls[identifier] == 1


async def test_a_request_that_never_reached_the_vendor_is_sent_by_the_next_run(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = await video_params(pipeline, await connect(pipeline, "heygen"))
    cut_off(monkeypatch, HeyGen, after_sending=False, error=WorkerStopped("killed before"))

    first = await failed_run(params)
    monkeypatch.undo()
    second = await content_pipeline(**params)

    assert "WorkerStopped" in first
    assert second.items[0].ok
    assert pipeline.paid_calls["heygen"] == 1


async def test_an_ambiguous_failure_is_settled_by_asking_the_vendor_before_falling_back(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = [await connect(pipeline, "heygen"), await connect(pipeline, "synthesia")]
    params = await video_params(pipeline, *chain)
    gateway = Transient("bad gateway", provider="heygen", status=502)  # sent, outcome unknown
    started = cut_off(monkeypatch, HeyGen, after_sending=True, error=gateway)

    summary = await content_pipeline(**params)

    assert summary.items[0].ok
    step = video_step(summary)
    assert (step.provider, step.details["job_id"]) == ("heygen", started[0])
    assert pipeline.paid_calls == {"heygen": 1}  # Synthesia was never asked to render


async def test_a_refused_request_falls_back_without_asking(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = [await connect(pipeline, "heygen"), await connect(pipeline, "synthesia")]
    params = await video_params(pipeline, *chain)
    refused = Transient("unavailable", provider="heygen", status=503)  # refused before acting
    cut_off(monkeypatch, HeyGen, after_sending=False, error=refused)
    looked_up: list[str] = []

    async def find_submitted(self: Any, *args: Any) -> str | None:
        looked_up.append(self.identifier)
        return None

    monkeypatch.setattr(HeyGen, "find_submitted", find_submitted)

    summary = await content_pipeline(**params)

    assert video_step(summary).provider == "synthesia"
    assert looked_up == []
    assert pipeline.paid_calls == {"synthesia": 1}


class NoLookupVideo:
    """A video vendor that keeps no client reference, so it cannot be asked afterwards."""

    def __init__(self, calls: list[str], *, fail: Exception | None = None) -> None:
        self.identifier = "heygen"
        self.calls = calls
        self.fail = fail

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> RenderJob:
        self.calls.append("submit")
        if self.fail is not None:
            raise self.fail
        return RenderJob(provider=self.identifier, id="job-1", status=JobStatus.QUEUED)

    async def wait_for_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        return RenderJob(provider=self.identifier, id=job_id, status=JobStatus.SUCCEEDED,
                         result_url="https://cdn.example/v.mp4")  # fmt: skip


async def test_a_vendor_that_cannot_be_asked_is_not_sent_the_render_twice(
    pipeline: Pipeline,
) -> None:
    calls: list[str] = []
    params = await video_params(pipeline, await connect(pipeline, "heygen"))
    pipeline.runtime.overrides["heygen"] = NoLookupVideo(
        calls, fail=WorkerStopped("killed after sending")
    )  # type: ignore[assignment]
    assert "WorkerStopped" in await failed_run(params)
    pipeline.runtime.overrides["heygen"] = NoLookupVideo(calls)  # type: ignore[assignment]

    unsure = await failed_run(params)
    refreshed = await content_pipeline(**params, options=RunOptions(refresh=True))

    assert "SubmissionUncertain" in unsure
    assert "not paid twice" in unsure
    assert "refresh" in unsure
    assert refreshed.items[0].ok
    assert calls == ["submit", "submit"]  # the stopped run's, then the refreshed run's


async def test_a_request_refused_before_sending_leaves_nothing_uncertain(
    pipeline: Pipeline,
) -> None:
    calls: list[str] = []
    params = await video_params(pipeline, await connect(pipeline, "heygen"))
    bad = InvalidInput("bad render request", {"avatar_id": "unknown avatar"})
    pipeline.runtime.overrides["heygen"] = NoLookupVideo(calls, fail=bad)  # type: ignore[assignment]

    first = await failed_run(params)
    again = await failed_run(params)

    assert "InvalidInput" in first
    assert "InvalidInput" in again  # the real reason again, not SubmissionUncertain
    assert "SubmissionUncertain" not in again


async def test_speech_made_for_a_stopped_worker_comes_from_the_history_unpaid(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    eleven = await pipeline.connect("elevenlabs", {"api_key": "el_sandbox"})
    eleven.options = {"voice_id": ELEVENLABS_VOICE}
    params = await video_params(pipeline)
    params["voice"] = VoiceSettings(providers=[eleven])
    made: list[str] = []
    original = ElevenLabsProvider.send_data

    async def stopped(self: Any, credentials: Mapping[str, str], data: Any) -> Any:
        made.append((await original(self, credentials, data)).media.sha256)
        raise WorkerStopped("killed before the audio was kept")

    monkeypatch.setattr(ElevenLabsProvider, "send_data", stopped)
    assert "WorkerStopped" in await failed_run(params)
    monkeypatch.undo()

    summary = await content_pipeline(**params)

    assert summary.items[0].ok
    voice = next(s for s in summary.items[0].steps if s.kind == "voice")
    assert voice.details["sha256"] == made[0]
    assert pipeline.paid_calls == {"elevenlabs": 1}
