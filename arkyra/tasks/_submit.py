"""Submitting a paid render or speech at most once, even across a worker stopped mid-request.

The note of :class:`~arkyra.tasks._paid.PendingJobs` is written before the request leaves
and again once the vendor names the job. A later run that finds only the first note cannot
tell from here whether the vendor started the job, so it asks the vendor, by the client
reference sent with the request (``RenderProvider.reference_field``): a job found is waited
for, none found is submitted. A vendor that cannot be asked gets nothing sent twice; the
run says so and how to render it anyway.

The same lookup settles a submission that failed ambiguously (a 502 or a broken connection
after the request left) before the step falls back to another provider.

Speech is paid in one call that returns the audio. A run that finds a note of speech it has no
result for asks the vendor's history (``SpeechProvider.find_spoken``) for that audio; where
there is no history, or it cannot be read, the speech is made again: cheap next to a render,
and the run finishes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prefect.logging import get_run_logger

from arkyra.errors import (
    BadRequest,
    ContentRejected,
    ContextTooLong,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    SubmissionUncertain,
    Transient,
)
from arkyra.pipelines.resilience import RetryPolicy, call_again
from arkyra.providers.audio.speech import SpeechProvider, SpeechResult
from arkyra.providers.jobs import RenderJob, RenderProvider
from arkyra.tasks._paid import PendingJobs

#: How far before the note a vendor's job may be stamped (clocks differ between hosts).
CLOCK_SKEW_SECONDS = 300.0

#: Errors that come with the vendor's answer that it started nothing.
_REFUSED = (BadRequest, ContentRejected, ContextTooLong, InvalidCredentials, QuotaExhausted,
            RateLimited)  # fmt: skip


async def earlier_submission(
    provider: RenderProvider,
    credentials: Mapping[str, str],
    journal: PendingJobs,
    identifier: str,
    policy: RetryPolicy,
) -> str | None:
    """The job an earlier run submitted for this content to ``identifier``, or ``None``.

    Raises :class:`SubmissionUncertain` when that run stopped mid-request and the vendor
    cannot be asked whether the job exists.
    """
    note = journal.note(identifier)
    if note is None:
        return None
    if note.job_id is not None:
        get_run_logger().info("resuming render %s submitted by an earlier run", note.job_id)
        return note.job_id
    if note.reference is None or _reference_field(provider) is None:
        raise SubmissionUncertain(
            "an earlier attempt at this render may have reached the vendor (its worker "
            "stopped, or the answer was lost), and this vendor cannot be asked whether it "
            "started; not submitting it again, so it is not paid twice. Check the vendor's "
            "dashboard, then run again with refresh to render it",
            provider=identifier,
        )
    try:
        found = await _look_up(provider, credentials, note.reference, note.since, policy)
    except ProviderError as exc:
        raise SubmissionUncertain(
            "an earlier attempt at this render may have reached the vendor, and asking it "
            f"whether the render started failed ({type(exc).__name__}: {exc.message}); not "
            "submitting it again, so it is not paid twice. Run again later",
            provider=identifier,
        ) from None
    if found is None:
        get_run_logger().info(
            "an earlier attempt at this render never reached %s; submitting it now",
            identifier,
        )
        return None
    get_run_logger().info("found render %s from an earlier attempt; resuming", found)
    journal.remember(identifier, found, note.reference)
    return found


async def submit_once(
    submit: Callable[[dict[str, Any]], Awaitable[RenderJob]],
    request: dict[str, Any],
    *,
    provider: RenderProvider,
    credentials: Mapping[str, str],
    journal: PendingJobs,
    identifier: str,
    policy: RetryPolicy,
    attempts: int | None,
) -> str:
    """Send ``request`` through ``submit`` with the notes around it; the vendor's job id.

    The reference goes in the provider's ``reference_field`` unless the integration's options
    already set that field (a user's own ``callback_id`` is kept); such a request cannot be
    looked up later, as the same value may be on every item.
    """
    field = _reference_field(provider)
    reference: str | None = None
    if field is not None and not request.get(field):
        reference = journal.key
        request = {**request, field: reference}
    journal.intend(identifier, reference)
    sent_at = time.time()
    try:
        job = await call_again(
            lambda: submit(request), policy, replayable=False,
            what=f"{identifier} render", attempts=attempts,
        )  # fmt: skip
    except InvalidInput:
        journal.forget()  # refused while the request was built: nothing was sent
        raise
    except ProviderError as exc:
        if not maybe_started(exc, policy):
            journal.forget()
            raise
        if reference is None:
            raise
        found = await _settle(provider, credentials, reference, sent_at, exc, policy)
        if found is None:
            raise
        journal.remember(identifier, found, reference)
        return found
    journal.remember(identifier, job.id, reference)
    return job.id


async def speak_once(
    speak: Callable[[], Awaitable[SpeechResult]],
    request: dict[str, Any],
    *,
    provider: SpeechProvider,
    credentials: Mapping[str, str],
    journal: PendingJobs,
    identifier: str,
    policy: RetryPolicy,
    attempts: int | None,
) -> SpeechResult:
    """Speech made by a stopped worker, from the vendor's history; else ``speak()``."""
    can_look = bool(getattr(provider, "finds_spoken", False))
    note = journal.note(identifier)
    if note is not None and can_look:
        found = await _spoken(provider, credentials, request, note.since, policy)
        if found is not None:
            get_run_logger().info(
                "speech made for a stopped worker found in %s's history; not paid again",
                identifier,
            )
            return found
    journal.intend(identifier, None)
    sent_at = time.time()
    try:
        return await call_again(
            speak, policy, replayable=False, what=f"{identifier} speech", attempts=attempts
        )
    except InvalidInput:
        journal.forget()
        raise
    except ProviderError as exc:
        if not maybe_started(exc, policy):
            journal.forget()
            raise
        found = await _spoken(provider, credentials, request, sent_at, policy) if can_look else None
        if found is None:
            raise
        get_run_logger().info(
            "%s made the speech although the request failed (%s); using it",
            identifier, type(exc).__name__,
        )  # fmt: skip
        return found


async def _spoken(
    provider: SpeechProvider,
    credentials: Mapping[str, str],
    request: dict[str, Any],
    since: float,
    policy: RetryPolicy,
) -> SpeechResult | None:
    try:
        return await call_again(
            lambda: provider.find_spoken(credentials, request, since - CLOCK_SKEW_SECONDS),
            policy, replayable=True, what=f"{provider.identifier} history lookup",
        )  # fmt: skip
    except ProviderError as exc:
        get_run_logger().warning(
            "could not read %s's history (%s); making the speech again",
            provider.identifier, exc.message,
        )  # fmt: skip
        return None


def maybe_started(exc: ProviderError, policy: RetryPolicy) -> bool:
    """Whether the vendor may have started (and will bill) the job despite ``exc``."""
    if isinstance(exc, _REFUSED):
        return False
    if isinstance(exc, Transient):
        return not policy.safe_to_repeat(exc, replayable=False)
    return True


async def _settle(
    provider: RenderProvider,
    credentials: Mapping[str, str],
    reference: str,
    sent_at: float,
    failure: ProviderError,
    policy: RetryPolicy,
) -> str | None:
    """After an ambiguous failure: the job the vendor started anyway, if it can be found."""
    try:
        found = await _look_up(provider, credentials, reference, sent_at, policy)
    except ProviderError as exc:
        get_run_logger().warning(
            "could not check whether %s started the render after %s: %s",
            provider.identifier, type(failure).__name__, exc.message,
        )  # fmt: skip
        return None
    if found is not None:
        get_run_logger().info(
            "%s started render %s although the request failed (%s); using it",
            provider.identifier, found, type(failure).__name__,
        )  # fmt: skip
    return found


async def _look_up(
    provider: RenderProvider,
    credentials: Mapping[str, str],
    reference: str,
    since: float,
    policy: RetryPolicy,
) -> str | None:
    return await call_again(
        lambda: provider.find_submitted(credentials, reference, since - CLOCK_SKEW_SECONDS),
        policy, replayable=True, what=f"{provider.identifier} render lookup",
    )  # fmt: skip


def _reference_field(provider: RenderProvider) -> str | None:
    """The provider's reference field; ``None`` also for a stand-in without one."""
    return getattr(provider, "reference_field", None)
