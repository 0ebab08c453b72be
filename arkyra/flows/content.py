"""``content_pipeline``: source items -> a script each -> video and/or voice -> destinations.

Composition only: the work is in ``arkyra.tasks``. Items fan out concurrently (async tasks,
at most ``options.max_concurrency`` items in flight; every provider call also holds a slot of
that provider's global concurrency limit). One item's failure is recorded in the summary and
does not stop the others; the run fails only when every item failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from arkyra.alerts import pipeline_failure_hook
from arkyra.pipelines.limits import ensure_limits
from arkyra.pipelines.models import (
    ContentSource,
    HookEvent,
    Integration,
    ItemOutcome,
    RunOptions,
    RunSummary,
    ScriptSettings,
    StepResult,
    VideoSettings,
    VoiceSettings,
)
from arkyra.pipelines.steps import (
    PipelineFailed,
    failed_outcome,
    publish_summary,
    run_step,
)
from arkyra.providers.content.items import ContentItem
from arkyra.tasks._paid import with_chain
from arkyra.tasks.content import pull_content
from arkyra.tasks.delivery import ITEM_EVENT, delivery_id, push_result
from arkyra.tasks.media import render_video, synthesize_voice
from arkyra.tasks.script import generate_script

SUMMARY_KEY = "content-pipeline-summary"
#: Threads for ``fan_out="task_runner"`` with the default runner (Dask brings its own workers).
ITEM_WORKERS = 8


def source_script(item: ContentItem, settings: ScriptSettings) -> StepResult:
    """Without AI models, the item's own text is the script."""
    text = (item.body or item.title).strip()[: settings.max_source_chars]
    return StepResult(kind="script", provider=item.source, text=text)


def delivery_payload(
    item: ContentItem, steps: list[StepResult], hook: HookEvent | None
) -> dict[str, Any]:
    """What destinations receive: the item, its script and where its media are."""
    payload: dict[str, Any] = {
        "item": {
            "id": item.id,
            "title": item.title,
            "source": item.source,
            "url": item.source_url,
        },
        "providers": {s.kind: s.provider for s in steps},
    }
    for step in steps:
        if step.kind == "script":
            payload["script"] = step.text
        elif step.kind == "video":
            payload["video_url"] = step.output
        elif step.kind == "voice":
            payload["audio"] = {"path": step.output, "sha256": step.details.get("sha256")}
    if hook is not None and hook.delivery_id:
        payload["trigger"] = {"source": hook.source, "delivery_id": hook.delivery_id}
    return payload


async def process_item(
    organization_id: str,
    item: ContentItem,
    script: ScriptSettings,
    video: VideoSettings | None,
    voice: VoiceSettings | None,
    destinations: list[Integration],
    options: RunOptions,
    hook: HookEvent | None,
) -> ItemOutcome:
    """One item through every step; any failure becomes a failed outcome, never an exception."""
    steps: list[StepResult] = []
    try:
        if script.providers:
            attempts = 1 if script.use_router else len(script.providers)
            task = with_chain(generate_script, attempts, refresh=options.refresh)
            steps.append(await run_step("script", task, organization_id, item, script))
        else:
            steps.append(source_script(item, script))
        text = steps[-1].text or item.title
        media = []
        if video is not None:
            task = with_chain(render_video, len(video.providers), refresh=options.refresh)
            media.append(run_step("video", task, organization_id, item.id, item.title, text, video))
        if voice is not None:
            task = with_chain(synthesize_voice, len(voice.providers), refresh=options.refresh)
            media.append(run_step("voice", task, organization_id, item.id, text, voice))
        results = await asyncio.gather(*media, return_exceptions=True)
        steps += [r for r in results if isinstance(r, StepResult)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        payload = delivery_payload(item, steps, hook)
        deliveries = [
            run_step("delivery", push_result, organization_id, destination,
                     delivery_id(organization_id, destination, payload), ITEM_EVENT, payload)
            for destination in destinations
        ]  # fmt: skip
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        steps += [r for r in results if isinstance(r, StepResult)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
    except Exception as exc:
        get_run_logger().error("item %s failed: %s", item.id, exc)
        return failed_outcome(item.id, item.title, steps, exc)
    return ItemOutcome(item_id=item.id, title=item.title, ok=True, steps=steps)


@task(name="process_item", task_run_name="item {item.id}", cache_policy=NO_CACHE)
async def process_item_task(
    organization_id: str,
    item: ContentItem,
    script: ScriptSettings,
    video: VideoSettings | None,
    voice: VoiceSettings | None,
    destinations: list[Integration],
    options: RunOptions,
    hook: HookEvent | None,
) -> ItemOutcome:
    """One item as a task of its own, for task runners that spread work (Dask)."""
    return await process_item(
        organization_id, item, script, video, voice, destinations, options, hook
    )


async def fan_out(
    organization_id: str,
    items: list[ContentItem],
    script: ScriptSettings,
    video: VideoSettings | None,
    voice: VoiceSettings | None,
    destinations: list[Integration],
    options: RunOptions,
    hook: HookEvent | None,
) -> list[ItemOutcome]:
    """Every item through the pipeline, concurrently, in input order."""
    args = (script, video, voice, destinations, options, hook)
    if options.fan_out == "task_runner":
        futures = [process_item_task.submit(organization_id, item, *args) for item in items]
        return [await asyncio.to_thread(future.result) for future in futures]
    limit = asyncio.Semaphore(options.max_concurrency)

    async def one(item: ContentItem) -> ItemOutcome:
        async with limit:
            return await process_item(organization_id, item, *args)

    return list(await asyncio.gather(*(one(item) for item in items)))


@flow(
    name="content-pipeline",
    flow_run_name="content for {organization_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=ITEM_WORKERS),
    on_failure=[pipeline_failure_hook],
)
async def content_pipeline(
    organization_id: str,
    source: ContentSource,
    script: ScriptSettings = ScriptSettings(),
    video: VideoSettings | None = None,
    voice: VoiceSettings | None = None,
    destinations: list[Integration] | None = None,
    options: RunOptions = RunOptions(),
    hook: HookEvent | None = None,
) -> RunSummary:
    """Turn a source's items into scripts, videos and voice-overs, and deliver them."""
    logger = get_run_logger()
    destinations = destinations or []
    chains = [source.integration, *script.providers, *destinations]
    chains += [*(video.providers if video else []), *(voice.providers if voice else [])]
    await ensure_limits([i.identifier for i in chains], options.provider_limits)
    items = await pull_content(organization_id, source)
    outcomes = await fan_out(
        organization_id, items, script, video, voice, destinations, options, hook
    )
    summary = RunSummary(flow="content-pipeline", organization_id=organization_id, items=outcomes)
    if hook is not None and hook.delivery_id:
        summary.notes.append(f"started by {hook.source} webhook {hook.delivery_id} ({hook.type})")
    await publish_summary(summary, SUMMARY_KEY)
    logger.info("%d of %d items done", summary.succeeded, len(items))
    if items and summary.succeeded == 0:
        raise PipelineFailed(f"all {len(items)} items failed; see the run's summary artifact")
    return summary
