"""n8n Webhook node: POST the event to ``https://<host>/webhook/<path>``.

Contract: ``reference/provider-contracts-media-automation.md`` section 11.

- n8n is self-hosted or cloud, so any public HTTPS host is accepted; the path must contain
  ``/webhook/<path>`` (production: needs a saved, active workflow). A ``/webhook-test/`` URL is
  accepted with a warning: it is registered only after "Listen for test event", stays open for
  120 s and takes a single call.
- Optional header auth: ``header_name`` and ``header_value`` (both or neither) are sent on
  every delivery; a wrong value gives 401/403.
- "Respond immediately" (the default) gives 200 ``{"message": "Workflow was started"}``; an
  inactive workflow or unregistered test URL gives 404. Connecting sends nothing; the explicit
  test delivery tells these apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from arkyra.errors import InvalidInput
from arkyra.providers.automation._hooks import (
    AttemptResult,
    HookProvider,
    HookURL,
    listening_caveat,
    parse_url,
    require_scheme,
    url_error,
)
from arkyra.providers.base import CredentialField, third_party

WEBHOOK_PATH = re.compile(r"/(webhook|webhook-test)/[^/?#]", re.ASCII)
TEST_URL_SECONDS = 120
TEST_URL_WARNING = (
    f"This is an n8n test URL (/webhook-test/): it works only for {TEST_URL_SECONDS} s after "
    "'Listen for test event' and for a single call. Use the production URL (/webhook/) of the "
    "active workflow for real deliveries."
)
HEADER_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}", re.ASCII)
#: Headers a user's auth header may not replace.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


@third_party(
    identifier="n8n",
    title="n8n",
    description=(
        "Send each result to an n8n workflow through its Webhook node (https://<host>/webhook/"
        "<path>), with optional header auth. Test URLs (/webhook-test/) expire after 120 s. "
        "n8n answers 404 for an inactive workflow. " + listening_caveat("workflow")
    ),
    category="automation",
    fields=[
        CredentialField(
            "url",
            "Webhook URL",
            "url",
            help="The production URL of the Webhook node: https://<host>/webhook/<path>",
        ),
        CredentialField(
            "header_name",
            "Auth header name",
            "text",
            required=False,
            help="For the node's Header Auth: the header name, e.g. X-N8N-Auth.",
        ),
        CredentialField(
            "header_value",
            "Auth header value",
            "secret",
            required=False,
            help="For the node's Header Auth: the header value.",
        ),
    ],
)
class N8nProvider(HookProvider):
    """Deliveries to an n8n Webhook node."""

    default_base_url = ""

    @classmethod
    def validate_credentials(cls, credentials: Mapping[str, Any]) -> dict[str, str]:
        """The base checks, then header auth: both fields or neither, a valid header name."""
        clean = super().validate_credentials(credentials)
        name, value = clean.get("header_name"), clean.get("header_value")
        if bool(name) != bool(value):
            missing = "header_value" if name else "header_name"
            raise InvalidInput(
                "invalid credentials for n8n",
                {missing: "header auth needs both a header name and a value"},
            )
        if name is not None:
            if not HEADER_TOKEN.fullmatch(name):
                raise InvalidInput(
                    "invalid credentials for n8n", {"header_name": "is not a valid header name"}
                )
            if name.lower() in RESERVED_HEADERS:
                raise InvalidInput(
                    "invalid credentials for n8n",
                    {"header_name": f"{name} is set by the sender; choose another header"},
                )
        if value is not None and any(ch in value for ch in "\r\n\0"):
            raise InvalidInput(
                "invalid credentials for n8n", {"header_value": "may not contain line breaks"}
            )
        return clean

    def parse_hook_url(self, url: str) -> HookURL:
        """Any public host; the path must contain ``/webhook/`` (or ``/webhook-test/``)."""
        parsed = parse_url(url)
        require_scheme(parsed, strict=self.strict)
        matched = WEBHOOK_PATH.search(parsed.path)
        if not matched:
            raise url_error("must be an n8n webhook URL: https://<host>/webhook/<path>")
        warnings = (TEST_URL_WARNING,) if matched.group(1) == "webhook-test" else ()
        return HookURL(str(parsed), parsed.host, warnings)

    def account_name(self, credentials: Mapping[str, str], hook: HookURL) -> str:
        """The label or title; a test URL says so, since it stops working after 120 s."""
        name = super().account_name(credentials, hook)
        return f"{name} (test URL, expires)" if hook.warnings else name

    def extra_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        name, value = credentials.get("header_name"), credentials.get("header_value")
        return {name: value} if name and value else {}

    def result_hints(self, result: AttemptResult) -> list[str]:
        if result.status == 404:
            return [
                "n8n answered 404: the workflow is not active, or the path or HTTP method is "
                "wrong (a test URL must be listening)."
            ]
        if result.status in (401, 403):
            return ["n8n refused the header auth: check the header name and value."]
        return []
