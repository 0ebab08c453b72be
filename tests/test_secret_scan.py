"""The suite's own secret scan: it must catch keys where they start and ignore random tokens."""

from __future__ import annotations

import pytest

from tests.conftest import SECRET_PATTERNS


def flagged(text: str) -> bool:
    return any(pattern.search(text) for pattern in SECRET_PATTERNS)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer sk-proj-abcdefghijklmnop",
        '{"api_key": "sk-abcdefghijklmnop"}',
        "key=phx_abcdefghijklmnop",
        "x-api-key:hg_abcdefghij",
        "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ],
)
def test_keys_are_flagged_where_they_start(text: str) -> None:
    assert flagged(text)


@pytest.mark.parametrize(
    "text",
    [
        # CSRF tokens and request ids are url-safe base64 and hold these prefixes by chance
        '<input name="csrf" value="Qm9-sk-hEfPwVvRzA1b2c3d4e5">',
        "request id 7Zx_hg_abcdefghij",
        "nonce AbCdphx_abcdefghijklmnop",
    ],
)
def test_random_tokens_that_contain_a_prefix_are_not_flagged(text: str) -> None:
    assert not flagged(text)
