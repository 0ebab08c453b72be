"""Pulling content and metrics from sources (free reads: retried, never cached).

``pull_content`` turns a source's ``send_data`` answer into content items; ``pull_metrics``
runs an analytics query for one period and returns its table, so a flow can compare periods.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.logging import get_run_logger

from arkyra.errors import BadRequest, ProviderError
from arkyra.pipelines.limits import provider_slot
from arkyra.pipelines.models import ContentSource, MetricsSource
from arkyra.pipelines.resilience import call_again
from arkyra.pipelines.runtime import get_runtime
from arkyra.providers.content.items import AnalyticsContent, ContentItem

METRIC_SOURCES = frozenset({"ga4", "posthog", "amplitude"})
DEFAULT_POSTHOG_QUERY = (
    "SELECT event, count() AS events, count(DISTINCT person_id) AS people FROM events "
    "WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end}) "
    "GROUP BY event ORDER BY events DESC LIMIT 20"
)


async def _retry_transient(task: Task[Any, Any], task_run: TaskRun, state: State) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else None
    return isinstance(exc, ProviderError) and type(exc).retry_same_provider


def items_from(answer: Any, source: str) -> list[ContentItem]:
    """Content items from any source's answer (a list of items, or a summary + table)."""
    if isinstance(answer, list):
        return [item for item in answer if isinstance(item, ContentItem)]
    if isinstance(answer, AnalyticsContent):
        return [answer.item]
    raise BadRequest("returned no content items", provider=source)


@task(
    name="pull_content",
    task_run_name="pull {source.integration.identifier}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
)
async def pull_content(organization_id: str, source: ContentSource) -> list[ContentItem]:
    """Fetch the source's items (at most ``source.max_items``)."""
    runtime = get_runtime()
    integration = source.integration
    provider = runtime.provider(integration.identifier)
    credentials = await runtime.credentials(organization_id, integration)
    # Sources that can stop early (Notion, Sheets, Airtable) are asked for no more than needed.
    limit_query = getattr(provider, "limit_query", None)
    query = limit_query(source.query, source.max_items) if limit_query else source.query

    async def read() -> Any:
        async with provider_slot(integration.identifier):
            return await provider.send_data(credentials, query)

    what = f"{integration.identifier} read"
    answer = await call_again(read, runtime.retry, replayable=True, what=what)
    items = items_from(answer, integration.identifier)[: source.max_items]
    get_run_logger().info("%s: %d items", integration.identifier, len(items))
    return items


def metrics_query(source: MetricsSource, start: date, end: date) -> Any:
    """The source's query for ``start``..``end`` (inclusive days)."""
    identifier = source.integration.identifier
    base = source.query
    if identifier == "ga4":
        query = dict(base) if isinstance(base, dict) else {}
        query["date_ranges"] = [{"start_date": start.isoformat(), "end_date": end.isoformat()}]
        return query
    if identifier == "amplitude":
        query = dict(base) if isinstance(base, dict) else {}
        query.setdefault("event", {"event_type": "_active"})
        query.update({"start": start.isoformat(), "end": end.isoformat()})
        return query
    if identifier == "posthog":
        text = base if isinstance(base, str) else (base or {}).get("query", DEFAULT_POSTHOG_QUERY)
        next_day = (pd.Timestamp(end) + pd.Timedelta(days=1)).date()
        return {"query": text, "values": {"start": start.isoformat(), "end": next_day.isoformat()}}
    raise BadRequest("is not an analytics source (ga4, posthog, amplitude)", provider=identifier)


@task(
    name="pull_metrics",
    task_run_name="metrics {source.integration.identifier} {start}..{end}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
)
async def pull_metrics(
    organization_id: str, source: MetricsSource, start: date, end: date
) -> pd.DataFrame:
    """One period's metrics table from GA4, PostHog or Amplitude."""
    runtime = get_runtime()
    integration = source.integration
    provider = runtime.provider(integration.identifier)
    credentials = await runtime.credentials(organization_id, integration)
    async with provider_slot(integration.identifier):
        answer = await provider.send_data(credentials, metrics_query(source, start, end))
    if not isinstance(answer, AnalyticsContent):
        raise BadRequest("returned no table", provider=integration.identifier)
    return answer.frame


def compare_periods(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Totals of every numeric column, this period against the previous one."""
    now = current.select_dtypes("number").sum()
    before = previous.select_dtypes("number").sum().reindex(now.index, fill_value=0)
    table = pd.DataFrame({"current": now, "previous": before})
    table["change"] = table["current"] - table["previous"]
    denominator = table["previous"].where(table["previous"] != 0)
    table["change_pct"] = (table["change"] / denominator * 100).round(1)
    table.index.name = "metric"
    return table
