"""Looker Studio (reference sections 0 and 5): report ids, embed URLs and, with domain-wide
delegation, asset listing.

Looker Studio has no API that returns report data, chart values or renders. This provider
therefore stores report ids (or URLs), builds embed and view URLs, and lists reports and data
sources through ``assets:search`` when a Workspace user to impersonate is configured (the API
only works with domain-wide delegation: the JWT carries ``sub=<user>``). The numbers themselves
come from the report's sources: connect GA4 or Google Sheets to read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from arkyra.errors import InvalidInput
from arkyra.http.paginate import CursorPaginator
from arkyra.providers.base import (
    AccountInfo,
    CredentialField,
    ExposedInput,
    NoInput,
    expose,
    third_party,
)
from arkyra.providers.content.google_auth import (
    DATASTUDIO_READONLY,
    DRIVE_METADATA_READONLY,
    SERVICE_ACCOUNT_FIELD,
    GoogleServiceAccountProvider,
)
from arkyra.providers.content.items import ContentItem

EMBED_URL = "https://lookerstudio.google.com/embed/reporting/{report}"
VIEW_URL = "https://lookerstudio.google.com/reporting/{report}"
DATA_NOTE = (
    "Looker Studio has no data API: read this report's numbers from its sources "
    "(connect GA4 or Google Sheets)."
)

_REPORT_IN_URL = re.compile(r"/reporting/([A-Za-z0-9_-]+)(?:/page/([A-Za-z0-9_-]+))?")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]{6,}$")
_PAGE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class ReportRef(ExposedInput):
    report_id: str
    page_id: str | None = None


class EmbedInput(ExposedInput):
    report_id: str | None = Field(
        default=None, description="A report id or URL (default: the first connected report)."
    )
    page_id: str | None = Field(default=None, description="A page id, e.g. p_abc123.")


class ListAssetsInput(ExposedInput):
    asset_type: Literal["REPORT", "DATA_SOURCE"] = "REPORT"
    title: str | None = None
    owner: str | None = None
    include_trashed: bool = False
    order_by: Literal["title"] | None = None
    page_size: int = Field(default=100, ge=1, le=1000)
    max_items: int | None = Field(default=None, ge=1, description="Stop after this many assets.")


def parse_report(text: str) -> ReportRef:
    """A report id (and page id) from an id, a view URL or an embed URL."""
    text = text.strip()
    match = _REPORT_IN_URL.search(text)
    if match:
        return ReportRef(report_id=match[1], page_id=match[2])
    if _PLAIN_ID.match(text):
        return ReportRef(report_id=text)
    raise InvalidInput(
        f"not a Looker Studio report id or URL: {text[:80]!r}",
        {"report_id": "expected an id or https://lookerstudio.google.com/reporting/<id>"},
    )


def parse_reports(raw: str | None) -> list[ReportRef]:
    """Every report in a comma- or newline-separated list (duplicates dropped)."""
    refs: dict[str, ReportRef] = {}
    for part in re.split(r"[,\n]", raw or ""):
        if part.strip():
            ref = parse_report(part)
            refs.setdefault(ref.report_id, ref)
    return list(refs.values())


def embed_urls(ref: ReportRef) -> dict[str, str | None]:
    """Embed and view URLs; the owner must enable embedding in the report for the first."""
    suffix = f"/page/{ref.page_id}" if ref.page_id else ""
    return {
        "report_id": ref.report_id,
        "page_id": ref.page_id,
        "embed_url": EMBED_URL.format(report=ref.report_id) + suffix,
        "report_url": VIEW_URL.format(report=ref.report_id) + suffix,
    }


@third_party(
    identifier="looker-studio",
    title="Looker Studio",
    description=(
        "Looker Studio reports as embed links. Looker Studio has no data API: its data comes "
        "from GA4 or Google Sheets, so connect those to read the numbers. Listing reports "
        "needs Google Workspace domain-wide delegation."
    ),
    category="content",
    fields=[
        CredentialField(
            SERVICE_ACCOUNT_FIELD,
            "Service account key (JSON)",
            "json",
            help="A Google Cloud service account key; the check proves the key is valid.",
        ),
        CredentialField(
            "report_id",
            "Report IDs or URLs",
            "text",
            required=False,
            help=(
                "Optional: one or more report ids or URLs, comma separated. Used for embed "
                "URLs and content items; the report owner must enable embedding."
            ),
        ),
        CredentialField(
            "delegated_user",
            "Workspace user (domain-wide delegation)",
            "text",
            required=False,
            help=(
                "Optional: a Google Workspace user to act as. Needed only to list reports and "
                "data sources; your Workspace admin must allow the service account's client "
                "id for the datastudio.readonly scope."
            ),
        ),
    ],
)
class LookerStudioProvider(GoogleServiceAccountProvider):
    """Embed URLs for stored report ids; asset search with domain-wide delegation."""

    default_base_url = "https://datastudio.googleapis.com"
    scopes: ClassVar[tuple[str, ...]] = (DATASTUDIO_READONLY,)

    def sharing_hint(self, client_email: str, status_name: str) -> str | None:
        if status_name == "PERMISSION_DENIED":
            return (
                f"the Workspace admin must allow domain-wide delegation for {client_email} "
                "and the datastudio.readonly scope"
            )
        return None

    # -- the contract --------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """With a delegated user, one ``assets:search``; otherwise a token exchange alone."""
        account = self.service_account(credentials)
        parse_reports(credentials.get("report_id"))  # a malformed id fails now, not later
        user = _delegated_user(credentials)
        if user:
            await self._search(credentials, user, {"assetTypes": "REPORT", "pageSize": 1})
            name = credentials.get("label") or f"{user} ({account.display_name})"
            return AccountInfo(id=account.client_email, name=name)
        await self.access_token(account, (DRIVE_METADATA_READONLY,))
        return self.identity(account, credentials)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> list[ContentItem]:
        """One ContentItem per connected report (or per id/URL in ``data``), with embed URLs."""
        if isinstance(data, list | tuple):
            data = ",".join(str(d) for d in data)
        refs = parse_reports(data if isinstance(data, str) else credentials.get("report_id"))
        if not refs:
            raise InvalidInput(
                "looker-studio has no report to send", {"report_id": "add a report id or URL"}
            )
        return [_report_item(ref) for ref in refs]

    # -- exposed functions ---------------------------------------------------------------------

    @expose
    async def embed_url(
        self, credentials: Mapping[str, str], params: EmbedInput
    ) -> dict[str, str | None]:
        """The embed and view URLs of a report (page optional)."""
        if params.report_id:
            ref = parse_report(params.report_id)
        else:
            refs = parse_reports(credentials.get("report_id"))
            if not refs:
                raise InvalidInput("no report id given or connected", {"report_id": "required"})
            ref = refs[0]
        if params.page_id:
            if not _PAGE_ID.match(params.page_id):
                raise InvalidInput("not a page id", {"page_id": "letters, digits, _ and -"})
            ref = ReportRef(report_id=ref.report_id, page_id=params.page_id)
        return embed_urls(ref)

    @expose
    async def reports(
        self, credentials: Mapping[str, str], params: NoInput
    ) -> list[dict[str, str | None]]:
        """The connected reports with their embed URLs (no API call)."""
        return [embed_urls(ref) for ref in parse_reports(credentials.get("report_id"))]

    @expose
    async def list_assets(
        self, credentials: Mapping[str, str], params: ListAssetsInput
    ) -> list[dict[str, Any]]:
        """Reports or data sources visible to the delegated Workspace user (assets:search)."""
        user = _delegated_user(credentials)
        if not user:
            raise InvalidInput(
                "listing Looker Studio assets needs domain-wide delegation: set a Workspace "
                "user to act as",
                {"delegated_user": "required to list assets"},
            )
        page_size = min(params.page_size, params.max_items or params.page_size)
        query: dict[str, Any] = {"assetTypes": params.asset_type, "pageSize": page_size}
        if params.title:
            query["title"] = params.title
        if params.owner:
            query["owner"] = params.owner
        if params.include_trashed:
            query["includeTrashed"] = "true"
        if params.order_by:
            query["orderBy"] = params.order_by
        paginator = CursorPaginator(
            cursor_param="pageToken",
            next_cursor=lambda b: b.get("nextPageToken"),
            items=lambda b: b.get("assets") or [],
            max_items=params.max_items,
        )

        async def fetch(cursor: dict[str, Any]) -> Any:
            return await self._search(credentials, user, {**query, **cursor})

        return await paginator.collect(fetch)

    async def _search(
        self, credentials: Mapping[str, str], user: str, query: Mapping[str, Any]
    ) -> Any:
        return await self.google_json(
            "GET", "/v1/assets:search", credentials, params=query, subject=user
        )


def _delegated_user(credentials: Mapping[str, str]) -> str | None:
    user = (credentials.get("delegated_user") or "").strip()
    if user and "@" not in user:
        raise InvalidInput(
            "the delegated user must be an email address", {"delegated_user": "not an email"}
        )
    return user or None


def _report_item(ref: ReportRef) -> ContentItem:
    urls = embed_urls(ref)
    return ContentItem(
        source="looker-studio",
        id=ref.report_id,
        title=f"Looker Studio report {ref.report_id}",
        body=f"Embed: {urls['embed_url']}\n{DATA_NOTE}",
        source_url=urls["report_url"],
        fields=dict(urls),
    )
