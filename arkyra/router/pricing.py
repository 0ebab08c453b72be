"""The versioned price table, kept as data (``prices.json``), and the cost of a normalised usage.

Vendors count tokens differently (OpenAI's ``prompt_tokens`` includes cached tokens, Anthropic's
``input_tokens`` excludes them); the providers normalise that into :class:`Usage` once, so here
every vendor is billed the same way:

    input * input_rate + cached * cache_read_rate + cache_write * cache_write_rate
    + output * output_rate            (output already includes reasoning tokens)

A missing cache rate bills those tokens at the input rate. Long-context surcharges (OpenAI above
272K input tokens, Claude Haiku 5.5 above 100K) multiply the input-side and output rates.
An unknown model is billed with its provider's conservative ``*`` row and flagged ``fallback``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arkyra.providers.ai._base import CompletionRequest, Usage

PRICES_FILE = Path(__file__).with_name("prices.json")
PER_TOKENS = Decimal(1_000_000)
NANOS = Decimal("0.000000001")
WILDCARD = "*"

# estimate_input_tokens: a bound, deliberately on the high side (most text is ~4 chars/token).
CHARS_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 8
TOKENS_PER_IMAGE = 1_600


@dataclass(frozen=True, slots=True)
class LongContext:
    """Rates multiply when the total input exceeds ``above_input_tokens``."""

    above_input_tokens: int
    input_multiplier: Decimal
    output_multiplier: Decimal


@dataclass(frozen=True, slots=True)
class Price:
    """One row: USD per 1M tokens for a provider's model."""

    provider: str
    model: str
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    as_of: str = ""
    long_context: LongContext | None = None

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Price:
        def rate(name: str) -> Decimal | None:
            value = row.get(name)
            return None if value is None else Decimal(str(value))

        long = row.get("long_context")
        return cls(
            provider=row["provider"],
            model=row["model"],
            input=Decimal(str(row["input"])),
            output=Decimal(str(row["output"])),
            cache_read=rate("cache_read"),
            cache_write=rate("cache_write"),
            as_of=row.get("as_of", ""),
            long_context=LongContext(
                int(long["above_input_tokens"]),
                Decimal(str(long["input_multiplier"])),
                Decimal(str(long["output_multiplier"])),
            )
            if long
            else None,
        )


@dataclass(frozen=True, slots=True)
class Cost:
    """What a usage costs, under which price version; ``fallback`` when the model was unknown."""

    amount: Decimal
    price_version: str
    fallback: bool = False
    model: str = ""


class PriceTable:
    """Rows by (provider, model), with longest-prefix matching for dated model ids."""

    def __init__(self, version: str, as_of: str, rows: list[Price]) -> None:
        self.version = version
        self.as_of = as_of
        self._rows = {(r.provider, r.model): r for r in rows}
        self._by_provider: dict[str, list[Price]] = {}
        for row in rows:
            if row.model != WILDCARD:
                self._by_provider.setdefault(row.provider, []).append(row)
        for models in self._by_provider.values():
            models.sort(key=lambda r: len(r.model), reverse=True)
        self._cache: dict[tuple[str, str], tuple[Price, bool]] = {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriceTable:
        return cls(data["version"], data["as_of"], [Price.from_dict(r) for r in data["rows"]])

    @classmethod
    def load(cls, path: Path = PRICES_FILE) -> PriceTable:
        return cls.from_dict(json.loads(path.read_text()))

    def rows(self) -> list[Price]:
        return list(self._rows.values())

    def price(self, provider: str, model: str) -> tuple[Price, bool]:
        """The row for ``model`` and whether it is a fallback (unknown model)."""
        key = (provider, model)
        found = self._cache.get(key)
        if found is None:
            found = self._lookup(provider, model)
            if len(self._cache) < 10_000:
                self._cache[key] = found
        return found

    def _lookup(self, provider: str, model: str) -> tuple[Price, bool]:
        exact = self._rows.get((provider, model))
        if exact is not None:
            return exact, False
        for row in self._by_provider.get(provider, ()):
            # "gpt-6-sol-2026-09-22" is billed as "gpt-6-sol".
            if model.startswith(row.model + "-") or model.startswith(row.model + "@"):
                return row, False
        row = self._rows.get((provider, WILDCARD)) or self._rows.get((WILDCARD, WILDCARD))
        if row is None:
            raise LookupError(f"no price for {provider}/{model} and no fallback row")
        return row, True

    def cost(self, provider: str, model: str, usage: Usage) -> Cost:
        """The USD cost of ``usage`` (normalised token counts), rounded to nano-dollars."""
        row, fallback = self.price(provider, model)
        input_rate, output_rate = row.input, row.output
        cache_read = row.cache_read if row.cache_read is not None else row.input
        cache_write = row.cache_write if row.cache_write is not None else row.input
        long = row.long_context
        if long is not None and usage.total_input_tokens > long.above_input_tokens:
            input_rate *= long.input_multiplier
            cache_read *= long.input_multiplier
            cache_write *= long.input_multiplier
            output_rate *= long.output_multiplier
        micro = (
            usage.input_tokens * input_rate
            + usage.cached_tokens * cache_read
            + usage.cache_write_tokens * cache_write
            + usage.output_tokens * output_rate
        )
        amount = (micro / PER_TOKENS).quantize(NANOS, rounding=ROUND_HALF_UP)
        return Cost(amount, self.version, fallback, row.model)

    def worst_case(self, provider: str, model: str, input_tokens: int, max_tokens: int) -> Decimal:
        """The most a call can cost: every input token uncached, every output token used."""
        from arkyra.providers.ai._base import Usage

        usage = Usage(input_tokens=input_tokens, output_tokens=max_tokens)
        return self.cost(provider, model, usage).amount


@lru_cache(maxsize=1)
def default_price_table() -> PriceTable:
    """The table shipped with the package (loaded once per process)."""
    return PriceTable.load()


def estimate_input_tokens(request: CompletionRequest) -> int:
    """A fast upper bound on the prompt's tokens: characters / 3 plus per-message overhead."""
    chars = 0
    images = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        elif content:
            for part in content:
                text = part.get("text")
                if isinstance(text, str):
                    chars += len(text)
                elif part.get("type") not in (None, "text"):
                    images += 1
    if request.json_schema is not None:
        chars += len(json.dumps(request.json_schema, separators=(",", ":")))
    tokens = math.ceil(chars / CHARS_PER_TOKEN)
    return (
        tokens
        + TOKENS_PER_MESSAGE * len(request.messages)
        + TOKENS_PER_REQUEST
        + TOKENS_PER_IMAGE * images
    )


def to_nanos(amount: Decimal) -> int:
    """USD as an integer count of nano-dollars (exact arithmetic on every database)."""
    return int((amount / NANOS).to_integral_value(rounding="ROUND_CEILING"))


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(nanos) * NANOS).quantize(NANOS)
