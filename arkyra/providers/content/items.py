"""What every content source produces, so pipelines treat sources alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    import pandas as pd


class ContentItem(BaseModel):
    """One piece of content: a page, a row, a record, or an analytics summary."""

    source: str = Field(description="Provider identifier, e.g. 'notion'.")
    id: str
    title: str
    body: str = ""
    source_url: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime | None = None


@dataclass(frozen=True)
class AnalyticsContent:
    """What an analytics source (GA4, PostHog, Amplitude) returns: a summary item that pipelines
    treat like any other content, and the full table for comparisons."""

    item: ContentItem
    frame: pd.DataFrame
