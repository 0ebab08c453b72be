"""What every content source produces, so pipelines treat sources alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ContentItem(BaseModel):
    """One piece of content: a page, a row, a record, or an analytics summary."""

    source: str = Field(description="Provider identifier, e.g. 'notion'.")
    id: str
    title: str
    body: str = ""
    source_url: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime | None = None
