"""Golden costs for each vendor's token semantics, fallbacks and the input-token bound."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from arkyra.providers.ai._base import ChatMessage, CompletionRequest, Usage
from arkyra.router.pricing import (
    PRICES_FILE,
    PriceTable,
    default_price_table,
    estimate_input_tokens,
    from_nanos,
    to_nanos,
)


@pytest.fixture
def table() -> PriceTable:
    return default_price_table()


def test_table_is_versioned_data_with_dates() -> None:
    data = json.loads(PRICES_FILE.read_text())
    assert data["version"]
    assert data["as_of"]
    assert all(row.get("as_of") for row in data["rows"])
    table = default_price_table()
    assert table.version == data["version"]
    assert {r.provider for r in table.rows()} >= {"openai", "glm", "claude", "mistral"}


def test_openai_cached_tokens_are_billed_at_the_cache_rate(table: PriceTable) -> None:
    # OpenAI said prompt_tokens=1000 incl. 400 cached; normalised: 600 uncached + 400 cached.
    usage = Usage(input_tokens=600, cached_tokens=400, output_tokens=500, reasoning_tokens=200)
    cost = table.cost("openai", "gpt-6-sol", usage)
    # 600*2.00 + 400*0.20 + 500*10.00 = 6280 per 1M; reasoning is inside output already.
    assert cost.amount == Decimal("0.006280000")
    assert cost.price_version == table.version
    assert not cost.fallback


def test_openai_long_context_doubles_input_and_raises_output(table: PriceTable) -> None:
    usage = Usage(input_tokens=300_000, output_tokens=1_000)
    # above 272K: input x2 (4.00), output x1.5 (15.00)
    assert table.cost("openai", "gpt-6-sol", usage).amount == Decimal("1.215000000")
    small = Usage(input_tokens=272_000, output_tokens=1_000)
    assert table.cost("openai", "gpt-6-sol", small).amount == Decimal("0.554000000")


def test_anthropic_cache_reads_and_writes_each_at_their_rate(table: PriceTable) -> None:
    # Anthropic: input_tokens excludes cache tokens; writes cost 1.25x input.
    usage = Usage(input_tokens=600, cached_tokens=400, cache_write_tokens=200, output_tokens=500)
    cost = table.cost("claude", "claude-sonnet-5-5", usage)
    # 600*2 + 400*0.20 + 200*2.50 + 500*10 = 6780
    assert cost.amount == Decimal("0.006780000")


def test_haiku_5_5_prompt_tier(table: PriceTable) -> None:
    cheap = Usage(input_tokens=100_000, output_tokens=1_000)
    assert table.cost("claude", "claude-haiku-5-5", cheap).amount == Decimal("0.010500000")
    large = Usage(input_tokens=200_000, output_tokens=1_000)
    # above 100K prompt tokens: 0.50 / 2.50
    assert table.cost("claude", "claude-haiku-5-5", large).amount == Decimal("0.102500000")


def test_glm_cache_hits_and_free_flash(table: PriceTable) -> None:
    usage = Usage(input_tokens=1_000, cached_tokens=500, output_tokens=200)
    # 1000*1.40 + 500*0.26 + 200*4.40 = 2410
    assert table.cost("glm", "glm-5.3", usage).amount == Decimal("0.002410000")
    assert table.cost("glm", "glm-4.7-flash", usage).amount == Decimal(0)


def test_mistral_has_no_cache_rate_so_cached_is_input(table: PriceTable) -> None:
    usage = Usage(input_tokens=1_000, cached_tokens=1_000, output_tokens=1_000)
    # (1000 + 1000)*0.10 + 1000*0.30 = 500
    assert table.cost("mistral", "mistral-small-latest", usage).amount == Decimal("0.000500000")


def test_dated_model_ids_use_their_family_row(table: PriceTable) -> None:
    usage = Usage(input_tokens=100_000)
    cost = table.cost("openai", "gpt-6-luna-2026-09-22", usage)
    assert cost.amount == Decimal("0.010000000")
    assert not cost.fallback


def test_unknown_model_gets_the_conservative_provider_row_flagged(table: PriceTable) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    known_max = max(
        table.cost("mistral", r.model, usage).amount
        for r in table.rows()
        if r.provider == "mistral" and r.model != "*"
    )
    cost = table.cost("mistral", "mistral-tiny-2099", usage)
    assert cost.fallback
    assert cost.amount >= known_max
    other = table.cost("someone-else", "x", usage)
    assert other.fallback
    assert other.amount > 0


def test_worst_case_is_uncached_input_plus_all_output(table: PriceTable) -> None:
    assert table.worst_case("openai", "gpt-6-luna", 1_000, 1_000) == Decimal("0.000600000")


def test_estimate_input_tokens_is_an_upper_bound_with_overhead() -> None:
    request = CompletionRequest(
        messages=[
            ChatMessage(role="system", content="x" * 300),
            ChatMessage(role="user", content=[{"type": "text", "text": "y" * 30}]),
        ]
    )
    # 330 chars / 3 = 110, + 2 messages * 4 + 8
    assert estimate_input_tokens(request) == 126
    with_image = request.model_copy(
        update={"messages": [ChatMessage(role="user", content=[{"type": "image_url"}])]}
    )
    assert estimate_input_tokens(with_image) > 1_000


def test_provider_estimate_cost_uses_the_table() -> None:
    """BaseAIProvider.estimate_cost calls into this module with these exact names."""
    table = default_price_table()
    usage = Usage(input_tokens=10, output_tokens=10)
    assert table.cost("glm", "glm-4.7", usage).amount == Decimal("0.000028000")


def test_nanos_round_trip() -> None:
    assert to_nanos(Decimal("0.0000000011")) == 2  # rounds up: reservations never undershoot
    assert from_nanos(1_500_000_000) == Decimal("1.500000000")
