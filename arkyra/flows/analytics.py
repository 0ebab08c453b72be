"""``analytics_digest``: metrics for this period and the previous one -> an AI-written digest
-> voice and/or destinations.

GA4, PostHog or Amplitude supply one table per period; pandas totals every numeric column and
compares them; a model chain writes the digest (or, without models, a plain sentence per
metric does). The comparison table goes into the run's summary artifact.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow
from prefect.logging import get_run_logger

from arkyra.pipelines.limits import ensure_limits
from arkyra.pipelines.models import (
    DigestSettings,
    Integration,
    ItemOutcome,
    MetricsSource,
    RunOptions,
    RunSummary,
    StepResult,
    VoiceSettings,
)
from arkyra.pipelines.steps import PipelineFailed, failed_outcome, publish_summary, run_step
from arkyra.providers.ai._base import ChatMessage, CompletionRequest
from arkyra.tasks._paid import with_chain
from arkyra.tasks.content import compare_periods, pull_metrics
from arkyra.tasks.delivery import DIGEST_EVENT, delivery_id, push_result
from arkyra.tasks.media import synthesize_voice
from arkyra.tasks.script import generate_text

SUMMARY_KEY = "analytics-digest-summary"


def periods(end: date, days: int) -> tuple[tuple[date, date], tuple[date, date]]:
    """``(current, previous)``: two back-to-back periods of ``days`` days ending on ``end``."""
    start = end - timedelta(days=days - 1)
    previous_end = start - timedelta(days=1)
    return (start, end), (previous_end - timedelta(days=days - 1), previous_end)


def markdown_table(table: pd.DataFrame) -> str:
    """The comparison as a markdown table (no extra dependency)."""
    lines = ["| metric | current | previous | change | change % |", "|---|---|---|---|---|"]
    for metric, row in table.iterrows():
        pct = "-" if pd.isna(row["change_pct"]) else f"{row['change_pct']:+.1f}%"
        lines.append(
            f"| {metric} | {row['current']:,.0f} | {row['previous']:,.0f} "
            f"| {row['change']:+,.0f} | {pct} |"
        )
    return "\n".join(lines)


def plain_digest(table: pd.DataFrame, label: str) -> str:
    """A digest without AI: one sentence per metric, biggest relative change first."""
    if table.empty:
        return f"No {label} metrics were reported for this period."
    ordered = table.reindex(table["change_pct"].abs().sort_values(ascending=False).index)
    sentences = []
    for metric, row in ordered.iterrows():
        trend = "up" if row["change"] > 0 else "down" if row["change"] < 0 else "flat"
        pct = "" if pd.isna(row["change_pct"]) else f" ({row['change_pct']:+.1f}%)"
        sentences.append(f"{metric} is {trend} at {row['current']:,.0f}{pct}.")
    return " ".join(sentences)


def digest_request(table: pd.DataFrame, settings: DigestSettings, label: str) -> CompletionRequest:
    return CompletionRequest(
        messages=[
            ChatMessage(role="system", content=settings.instructions),
            ChatMessage(role="user", content=f"{label} metrics:\n\n{markdown_table(table)}"),
        ],
        max_tokens=settings.max_tokens,
        task_type="digest",
    )


@flow(name="analytics-digest", flow_run_name="digest for {organization_id}")
async def analytics_digest(
    organization_id: str,
    metrics: MetricsSource,
    digest: DigestSettings = DigestSettings(),
    voice: VoiceSettings | None = None,
    destinations: list[Integration] | None = None,
    options: RunOptions = RunOptions(),
    end_date: date | None = None,
) -> RunSummary:
    """Compare this period's metrics with the previous one and deliver a short digest."""
    logger = get_run_logger()
    destinations = destinations or []
    label = metrics.integration.identifier
    used = [metrics.integration, *digest.providers, *destinations]
    used += voice.providers if voice else []
    await ensure_limits([i.identifier for i in used], options.provider_limits)

    end = end_date or (datetime.now(UTC).date() - timedelta(days=1))
    current, previous = periods(end, metrics.period_days)
    now_frame, before_frame = await asyncio.gather(
        pull_metrics(organization_id, metrics, *current),
        pull_metrics(organization_id, metrics, *previous),
    )
    table = compare_periods(now_frame, before_frame)
    title = f"{label} digest {current[0]}..{current[1]}"
    steps: list[StepResult] = []
    try:
        if digest.providers:
            task = with_chain(generate_text, len(digest.providers), refresh=options.refresh)
            request = digest_request(table, digest, label)
            steps.append(
                await run_step("digest", task, organization_id, digest.providers, request, "digest")
            )
        else:
            steps.append(
                StepResult(kind="digest", provider="pandas", text=plain_digest(table, label))
            )
        text = steps[-1].text or ""
        if voice is not None:
            task = with_chain(synthesize_voice, len(voice.providers), refresh=options.refresh)
            steps.append(await run_step("voice", task, organization_id, title, text, voice))
        payload: dict[str, Any] = {
            "title": title,
            "digest": text,
            "metrics": table.reset_index().to_dict(orient="records"),
            "audio": next((s.output for s in steps if s.kind == "voice"), None),
        }
        for destination in destinations:
            message_id = delivery_id(organization_id, destination, payload)
            steps.append(
                await run_step(
                    "delivery",
                    push_result,
                    organization_id,
                    destination,
                    message_id,
                    DIGEST_EVENT,
                    payload,
                )
            )
        outcome = ItemOutcome(item_id=title, title=title, ok=True, steps=steps)
    except Exception as exc:
        logger.error("digest failed: %s", exc)
        outcome = failed_outcome(title, title, steps, exc)
    summary = RunSummary(flow="analytics-digest", organization_id=organization_id, items=[outcome])
    digest_text = next((s.text for s in outcome.steps if s.kind == "digest" and s.text), "")
    extra = f"## {title}\n\n{markdown_table(table)}\n\n{digest_text}"
    await publish_summary(summary, SUMMARY_KEY, extra)
    if not outcome.ok:
        raise PipelineFailed(outcome.error or "the digest failed")
    return summary
