"""Zapier Catch Hook: POST the event to ``https://hooks.zapier.com/hooks/catch/<id>/<token>/``.

Contract: ``reference/provider-contracts-media-automation.md`` section 9.

- The URL is the credential (no header auth). ``silent/`` after the token empties the answer.
- Zapier answers 200 ``{"status": "success", ...}`` even when the Zap is off or deleted, so a
  successful test proves only that the URL is well formed and reachable.
- Only the URL's syntax is checked when connecting (plus the SSRF guard); the test delivery is an
  explicit action because it fires the Zap.
"""

from __future__ import annotations

import re

from arkyra.providers.automation._hooks import (
    HookProvider,
    HookURL,
    listening_caveat,
    parse_url,
    require_scheme,
    url_error,
)
from arkyra.providers.base import CredentialField, third_party

ZAPIER_HOST = "hooks.zapier.com"
CATCH_PATH = re.compile(r"/hooks/catch/[0-9]+/[A-Za-z0-9]+/?(?:silent/?)?", re.ASCII)


@third_party(
    identifier="zapier",
    title="Zapier",
    description=(
        "Send each result to a Zap through a 'Catch Hook' URL (hooks.zapier.com). Zapier answers "
        "200 even when the Zap is off or deleted. " + listening_caveat("Zap")
    ),
    category="automation",
    fields=[
        CredentialField(
            "url",
            "Catch Hook URL",
            "url",
            help="https://hooks.zapier.com/hooks/catch/<account id>/<hook id>/",
        )
    ],
)
class ZapierProvider(HookProvider):
    """Deliveries to a Zapier Catch Hook."""

    default_base_url = "https://hooks.zapier.com"

    def parse_hook_url(self, url: str) -> HookURL:
        """``hooks.zapier.com/hooks/catch/<digits>/<token>/``; any host in sandbox mode."""
        parsed = parse_url(url)
        require_scheme(parsed, strict=self.strict)
        if self.strict:
            if parsed.host != ZAPIER_HOST or parsed.port is not None:
                raise url_error(f"must be a {ZAPIER_HOST} Catch Hook URL")
            matched = CATCH_PATH.fullmatch(parsed.path)
        else:
            matched = re.search(CATCH_PATH.pattern + "$", parsed.path)
        if not matched:
            raise url_error("must look like /hooks/catch/<digits>/<token>/")
        return HookURL(str(parsed), parsed.host)
