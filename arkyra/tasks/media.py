"""Renders and speech: paid tasks over a provider chain, cached by script and settings.

The request each vendor takes is built from the script, the shared settings and the provider's
own ``options`` (avatar, voice). Once a render has been submitted, losing track of it is not a
fallback case: the vendor may still finish (and bill) it, so the error names the job instead,
and the job id is noted (``PendingJobs``) so that the next run, or a run after the worker was
killed, waits for that job rather than paying for another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task

from arkyra.db.models import utcnow
from arkyra.errors import BadRequest, JobDeadlineExceeded, ProviderError
from arkyra.pipelines.activity_log import log_job
from arkyra.pipelines.costs import video_cost, voice_cost
from arkyra.pipelines.fallback import (
    current_attempts,
    fallback_allowed,
    last_in_chain,
    pick,
    record_attempt,
)
from arkyra.pipelines.limits import provider_slot
from arkyra.pipelines.models import Integration, StepResult, VideoSettings, VoiceSettings
from arkyra.pipelines.models import content_hash as _hash
from arkyra.pipelines.resilience import call_again
from arkyra.pipelines.runtime import get_runtime
from arkyra.providers.audio.speech import SpeechResult
from arkyra.providers.jobs import RenderJob
from arkyra.tasks._paid import PendingJobs, paid_cache, paid_task_options
from arkyra.tasks._submit import earlier_submission, speak_once, submit_once

RequestBuilder = Callable[[str, str, VideoSettings, dict[str, Any]], dict[str, Any]]


def _heygen(script: str, title: str, settings: VideoSettings, options: dict[str, Any]) -> dict:
    return {"script": script, "title": title, "test": settings.test or None, **options}


def _synthesia(script: str, title: str, settings: VideoSettings, options: dict[str, Any]) -> dict:
    clip = {k: v for k, v in options.items() if k not in ("aspectRatio", "visibility")}
    body: dict[str, Any] = {"input": [{"scriptText": script, **clip}], "title": title}
    body.update({k: options[k] for k in ("aspectRatio", "visibility") if k in options})
    if settings.test:
        body["test"] = True
    return body


def _d_id(script: str, title: str, settings: VideoSettings, options: dict[str, Any]) -> dict:
    extra = {k: v for k, v in options.items() if k != "script"}
    return {"script": {"type": "text", "input": script, **options.get("script", {})}, **extra}


def _runway(script: str, title: str, settings: VideoSettings, options: dict[str, Any]) -> dict:
    return {"prompt_text": script[:1000], **options}


VIDEO_REQUESTS: dict[str, RequestBuilder] = {
    "heygen": _heygen,
    "synthesia": _synthesia,
    "d-id": _d_id,
    "runway": _runway,
}


def video_request(
    identifier: str, script: str, title: str, settings: VideoSettings, options: dict[str, Any]
) -> dict[str, Any]:
    """The ``send_data`` input for ``identifier``; ``BadRequest`` for a provider we cannot drive."""
    builder = VIDEO_REQUESTS.get(identifier)
    if builder is None:
        raise BadRequest("is not a video provider this pipeline can drive", provider=identifier)
    body = builder(script, title, settings, dict(options))
    return {k: v for k, v in body.items() if v is not None}


def _video_fingerprint(parameters: dict[str, Any]) -> str:
    settings: VideoSettings = parameters["settings"]
    shared = settings.model_dump(mode="json", exclude={"providers"})
    return _hash(parameters["organization_id"], parameters["script"], parameters["title"], shared)


@task(
    name="render_video",
    task_run_name="video {item_id}",
    cache_policy=paid_cache("video", _video_fingerprint),
    **paid_task_options(),
)
async def render_video(
    organization_id: str, item_id: str, title: str, script: str, settings: VideoSettings
) -> StepResult:
    """Render ``script`` with the first video provider of the chain that succeeds."""
    _, integration = pick(settings.providers)
    full_title = f"{settings.title_prefix}{title}"[:500]
    key = "video-" + _video_fingerprint(
        {"organization_id": organization_id, "script": script, "title": title, "settings": settings}
    )
    started = utcnow()
    runtime_settings = get_runtime().settings
    try:
        job = await _render(
            organization_id, integration, script, full_title, settings, PendingJobs(key),
            submit_attempts=None if last_in_chain(settings.providers) else 1,
        )  # fmt: skip
    except Exception as exc:
        record_attempt(integration.identifier, exc)
        await log_job(runtime_settings, organization_id, integration, started, error=exc)
        raise
    record_attempt(integration.identifier)
    job_view = job.model_dump(mode="json", exclude={"raw"})
    await log_job(runtime_settings, organization_id, integration, started, result=job_view)
    return StepResult(
        kind="video",
        provider=integration.identifier,
        attempts=current_attempts(),
        cost_usd=video_cost(integration.identifier, job.duration_seconds, script),
        output=job.result_url,
        details={"job_id": job.id, "duration_seconds": job.duration_seconds},
    )


async def _render(
    organization_id: str,
    integration: Integration,
    script: str,
    title: str,
    settings: VideoSettings,
    journal: PendingJobs,
    submit_attempts: int | None,
) -> RenderJob:
    """Submit the render (or pick up the one a killed run submitted) and wait for it."""
    runtime = get_runtime()
    provider = runtime.provider(integration.identifier)
    request = video_request(integration.identifier, script, title, settings, integration.options)
    credentials = await runtime.credentials(organization_id, integration)
    job_id = await earlier_submission(
        provider, credentials, journal, integration.identifier, runtime.retry
    )
    if job_id is None:

        async def submit(body: dict[str, Any]) -> RenderJob:
            async with provider_slot(integration.identifier):
                return await provider.send_data(credentials, body)

        job_id = await submit_once(
            submit, request, provider=provider, credentials=credentials, journal=journal,
            identifier=integration.identifier, policy=runtime.retry, attempts=submit_attempts,
        )  # fmt: skip

    async def wait() -> RenderJob:
        return await provider.wait_for_job(credentials, job_id)  # type: ignore[attr-defined]

    try:
        done = await call_again(
            wait,
            runtime.retry,
            replayable=True,
            what=f"render {job_id}",
            attempts=runtime.retry.poll_attempts,
        )
    except ProviderError as exc:
        if not fallback_allowed(exc):
            journal.forget()  # the job failed: a new run may render again
            raise
        raise JobDeadlineExceeded(
            f"lost track of render {job_id} ({type(exc).__name__}: {exc.message}); "
            "not rendering elsewhere, as it may still finish and be billed",
            provider=integration.identifier,
            details={"job_id": job_id},
        ) from None
    return done


def speech_request(text: str, settings: VoiceSettings, options: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text, **options}
    if settings.language and "language" not in body:
        body["language"] = settings.language
    if settings.speed and "speed" not in body:
        body["speed"] = settings.speed
    return body


def _voice_fingerprint(parameters: dict[str, Any]) -> str:
    settings: VoiceSettings = parameters["settings"]
    shared = settings.model_dump(mode="json", exclude={"providers"})
    return _hash(parameters["organization_id"], parameters["text"], shared)


@task(
    name="synthesize_voice",
    task_run_name="voice {item_id}",
    cache_policy=paid_cache("voice", _voice_fingerprint),
    **paid_task_options(),
)
async def synthesize_voice(
    organization_id: str, item_id: str, text: str, settings: VoiceSettings
) -> StepResult:
    """Speak ``text`` with the first voice provider of the chain that succeeds."""
    _, integration = pick(settings.providers)
    runtime = get_runtime()
    started = utcnow()
    key = "voice-" + _voice_fingerprint(
        {"organization_id": organization_id, "text": text, "settings": settings}
    )
    try:
        provider = runtime.provider(integration.identifier)
        credentials = await runtime.credentials(organization_id, integration)
        request = speech_request(text, settings, integration.options)

        async def speak() -> SpeechResult:
            async with provider_slot(integration.identifier):
                return await provider.send_data(credentials, request)

        result = await speak_once(
            speak, request, provider=provider, credentials=credentials,  # type: ignore[arg-type]
            journal=PendingJobs(key), identifier=integration.identifier, policy=runtime.retry,
            attempts=None if last_in_chain(settings.providers) else 1,
        )  # fmt: skip
    except Exception as exc:
        record_attempt(integration.identifier, exc)
        await log_job(runtime.settings, organization_id, integration, started, error=exc)
        raise
    record_attempt(integration.identifier)
    spoken = {
        "voice_id": result.voice_id,
        "characters": result.characters,
        "sha256": result.media.sha256,
    }
    await log_job(runtime.settings, organization_id, integration, started, result=spoken)
    return StepResult(
        kind="voice",
        provider=integration.identifier,
        attempts=current_attempts(),
        cost_usd=voice_cost(integration.identifier, result.characters),
        output=str(result.media.path),
        details={
            "voice_id": result.voice_id,
            "characters": result.characters,
            "sha256": result.media.sha256,
        },
    )
