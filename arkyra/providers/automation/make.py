"""Make (formerly Integromat) custom webhook: POST the event to ``https://hook.<zone>.make.com/<token>``.

Contract: ``reference/provider-contracts-media-automation.md`` section 10.

- The token in the URL is the credential; zones are e.g. ``eu1``, ``eu2``, ``us1``, ``us2``.
- Make answers 200 ``Accepted`` (text) when the webhook exists, whether or not the scenario is
  on; a scenario with a "Webhook response" module answers whatever that module sets.
- Connecting checks the URL's syntax and the SSRF guard only; the test delivery is explicit.
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

MAKE_HOST = re.compile(r"hook\.[a-z]{2}[0-9]{1,2}\.make\.com", re.ASCII)
TOKEN_PATH = re.compile(r"/[A-Za-z0-9]{10,64}", re.ASCII)


@third_party(
    identifier="make",
    title="Make",
    description=(
        "Send each result to a Make scenario through a custom webhook URL "
        "(hook.<zone>.make.com). Make answers 'Accepted' as long as the webhook exists, even "
        "when the scenario is off. " + listening_caveat("scenario")
    ),
    category="automation",
    fields=[
        CredentialField(
            "url", "Webhook URL", "url", help="https://hook.<zone>.make.com/<token>, e.g. zone eu1"
        )
    ],
)
class MakeProvider(HookProvider):
    """Deliveries to a Make custom webhook."""

    default_base_url = "https://hook.eu1.make.com"

    def parse_hook_url(self, url: str) -> HookURL:
        """``hook.<zone>.make.com/<token>``; any host in sandbox mode."""
        parsed = parse_url(url)
        require_scheme(parsed, strict=self.strict)
        if self.strict:
            if not MAKE_HOST.fullmatch(parsed.host) or parsed.port is not None:
                raise url_error("must be a hook.<zone>.make.com webhook URL")
            matched = TOKEN_PATH.fullmatch(parsed.path)
        else:
            matched = re.search(TOKEN_PATH.pattern + "$", parsed.path)
        if not matched:
            raise url_error("must end with the webhook token: /<token>")
        return HookURL(str(parsed), parsed.host)
