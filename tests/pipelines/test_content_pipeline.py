"""content_pipeline end to end against the sandbox: fan-out, caching, failure isolation."""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path

import httpx
from prefect.client.orchestration import get_client

from arkyra.api.jobs import JobRunner
from arkyra.db.models import Organization
from arkyra.db.session import Database
from arkyra.delivery.queue import delivery_log
from arkyra.flows.content import content_pipeline
from arkyra.pipelines.models import (
    ContentSource,
    RunOptions,
    ScriptSettings,
    VideoSettings,
    VoiceSettings,
)
from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID
from tests.pipelines.conftest import ELEVENLABS_VOICE, HEYGEN_AVATAR, HEYGEN_VOICE, Pipeline

SECRET = "whsec_" + base64.b64encode(b"s" * 24).decode()


async def media_params(pipeline: Pipeline) -> dict:
    notion = await pipeline.connect("notion", {"api_key": "secret_sandbox"})
    heygen = await pipeline.connect("heygen", {"api_key": "hg_sandbox"})
    eleven = await pipeline.connect("elevenlabs", {"api_key": "el_sandbox"})
    heygen.options = {"avatar_id": HEYGEN_AVATAR, "voice_id": HEYGEN_VOICE}
    eleven.options = {"voice_id": ELEVENLABS_VOICE}
    return {
        "organization_id": pipeline.org,
        "source": ContentSource(integration=notion, query={"id": CONTENT_DATA_SOURCE_ID}),
        "video": VideoSettings(providers=[heygen], test=True),
        "voice": VoiceSettings(providers=[eleven]),
        "options": RunOptions(max_concurrency=3),
    }


async def test_every_item_gets_a_video_and_a_voice(pipeline: Pipeline) -> None:
    params = await media_params(pipeline)
    params["script"] = ScriptSettings(providers=[pipeline.fake_ai("glm")])

    summary = await content_pipeline(**params)

    assert [i.ok for i in summary.items] == [True, True, True]
    assert pipeline.paid_calls == {"heygen": 3, "elevenlabs": 3}
    assert pipeline.ai_calls == ["glm"] * 3
    first = summary.items[0]
    kinds = {s.kind: s for s in first.steps}
    assert kinds["script"].provider == "glm"
    assert kinds["video"].output
    assert kinds["video"].output.startswith("http")
    assert kinds["voice"].output.endswith(".mp3")
    assert summary.cost_usd > 0
    async with get_client() as client:
        artifacts = await client.read_latest_artifacts()
    assert any(a.key == "content-pipeline-summary" for a in artifacts)


async def test_a_rerun_is_served_from_the_cache_and_pays_nothing(pipeline: Pipeline) -> None:
    params = await media_params(pipeline)
    params["script"] = ScriptSettings(providers=[pipeline.fake_ai("glm")])
    url = f"{pipeline.sandbox.url}/receiver/rerun"
    params["destinations"] = [await pipeline.connect("webhooks", {"url": url, "secret": SECRET})]
    first = await content_pipeline(**params)
    paid_after_first = pipeline.paid_calls
    ai_after_first = len(pipeline.ai_calls)

    second = await content_pipeline(**params)

    assert pipeline.paid_calls == paid_after_first
    assert len(pipeline.ai_calls) == ai_after_first
    assert all(s.cached for item in second.items for s in item.steps if s.kind != "delivery")
    assert [s.output for s in second.items[0].steps] == [s.output for s in first.items[0].steps]
    assert second.cost_usd == 0
    async with httpx.AsyncClient(base_url=pipeline.sandbox.url) as client:
        received = (await client.get("/receiver/_control/rerun")).json()
    assert len(received["deliveries"]) == 3  # each item delivered once, not once per run
    assert all(d["verified"] is not False for d in received["deliveries"])


async def test_refresh_pays_again_but_delivers_under_the_same_ids(pipeline: Pipeline) -> None:
    params = await media_params(pipeline)
    params["voice"] = None
    first = await content_pipeline(**params)
    params["options"] = RunOptions(refresh=True)

    second = await content_pipeline(**params)

    assert pipeline.paid_calls == {"heygen": 6}
    assert not any(s.cached for item in second.items for s in item.steps)
    assert [i.item_id for i in second.items] == [i.item_id for i in first.items]


async def test_one_failed_item_does_not_stop_the_others(pipeline: Pipeline) -> None:
    params = await media_params(pipeline)
    seen: list[str] = []

    def fail_the_second(prompt: str) -> str:
        seen.append(prompt)
        return "[fail]" if len(seen) == 2 else ""

    params["script"] = ScriptSettings(providers=[pipeline.fake_ai("glm", fail=fail_the_second)])
    params["options"] = RunOptions(max_concurrency=1)

    summary = await content_pipeline(**params)

    assert [i.ok for i in summary.items] == [True, False, True]
    failed = summary.items[1]
    assert failed.failed_step == "video"
    assert "JobFailed" in (failed.error or "")
    assert pipeline.paid_calls["heygen"] == 3
    assert {s.kind for s in summary.items[0].steps} == {"script", "video", "voice"}


async def test_items_can_fan_out_through_the_task_runner(pipeline: Pipeline) -> None:
    params = await media_params(pipeline)
    params["video"] = None
    params["options"] = RunOptions(fan_out="task_runner")

    summary = await content_pipeline(**params)

    assert [i.ok for i in summary.items] == [True, True, True]
    assert pipeline.paid_calls == {"elevenlabs": 3}


async def test_two_runs_at_once_pay_for_the_same_work_once(pipeline: Pipeline) -> None:
    params = await media_params(pipeline)
    params["video"] = None
    params["source"].max_items = 1
    pipeline.sandbox.state.faults_for("elevenlabs").latency_ms = 1500  # the runs overlap

    first, second = await asyncio.gather(content_pipeline(**params), content_pipeline(**params))

    assert pipeline.paid_calls == {"elevenlabs": 1}
    voices = [s for run in (first, second) for s in run.items[0].steps if s.kind == "voice"]
    assert sorted(s.cached for s in voices) == [False, True]


async def test_the_source_is_asked_for_no_more_items_than_the_run_keeps(
    pipeline: Pipeline,
) -> None:
    params = await media_params(pipeline)
    params["script"] = ScriptSettings(providers=[pipeline.fake_ai("glm")])
    params["source"].max_items = 1
    summary = await content_pipeline(**params)

    assert [i.ok for i in summary.items] == [True]
    state = pipeline.sandbox.state
    pages = set(state.store("notion")["pages"])  # the sandbox seeds itself on first use
    assert len(pages) >= 3
    prefix = "notion GET /notion/v1/blocks/"
    bodies_read = {
        key.removeprefix(prefix).split("/")[0] for key in state.calls if key.startswith(prefix)
    } & pages
    assert len(bodies_read) == 1  # the other pages' bodies were never fetched
    assert pipeline.paid_calls == {"heygen": 1, "elevenlabs": 1}


async def test_pipeline_work_is_in_each_integrations_history(
    pipeline: Pipeline, sqlite_template: Path, tmp_path: Path
) -> None:
    """Renders and speech among the integration's recent jobs, deliveries in its log."""
    path = tmp_path / "history.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    db = Database(url)
    async with db.transaction() as session:
        session.add(Organization(id=pipeline.org, name="history"))
    settings = pipeline.runtime.settings
    pipeline.runtime.settings = settings.model_copy(update={"database_url": url})
    params = await media_params(pipeline)
    params["script"] = ScriptSettings(providers=[pipeline.fake_ai("glm")])
    url = f"{pipeline.sandbox.url}/receiver/logged"
    webhook = await pipeline.connect("webhooks", {"url": url, "secret": SECRET})
    params["destinations"] = [webhook]

    await content_pipeline(**params)

    async with httpx.AsyncClient(base_url=pipeline.sandbox.url) as client:
        received = (await client.get("/receiver/_control/logged")).json()["deliveries"]
    jobs = JobRunner(db)
    try:
        assert webhook.integration_id is not None
        log = await delivery_log(db, pipeline.org, webhook.integration_id)
        video = params["video"].providers[0]
        voice = params["voice"].providers[0]
        renders = await jobs.recent(pipeline.org, integration_id=video.integration_id)
        speech = await jobs.recent(pipeline.org, integration_id=voice.integration_id)
        elsewhere = await jobs.recent("another-org")
    finally:
        await db.dispose()
    assert len(renders) == 3
    assert {(j.kind, j.status, j.identifier) for j in renders} == {
        ("pipeline", "succeeded", "heygen")
    }
    assert all(j.result["result_url"].startswith("http") for j in renders)
    assert all("raw" not in j.result for j in renders)
    assert len(speech) == 3
    assert {(j.status, j.identifier) for j in speech} == {("succeeded", "elevenlabs")}
    assert all(j.result["characters"] > 0 for j in speech)
    assert elsewhere == []
    assert sorted(entry.id for entry in log) == sorted(d["webhook_id"] for d in received)
    assert len(log) == 3
    for entry in log:
        assert entry.status == "delivered"
        assert entry.attempts == 1
        assert entry.last_status == 200
        assert entry.latency_ms is not None
        assert entry.event_type == "arkyra.item.completed"
