"""Cost estimates for the run summary (list prices; the vendor's invoice is the truth).

AI completions are priced by the provider from the router's price table; renders and speech
by duration and characters with the per-unit list prices below.
"""

from __future__ import annotations

from decimal import Decimal

#: USD per rendered minute (entry API plans, rounded).
VIDEO_USD_PER_MINUTE: dict[str, Decimal] = {
    "heygen": Decimal("1.00"),
    "synthesia": Decimal("2.00"),
    "d-id": Decimal("0.60"),
    "runway": Decimal("3.00"),
}

#: USD per 1,000 synthesised characters.
VOICE_USD_PER_1K_CHARS: dict[str, Decimal] = {
    "elevenlabs": Decimal("0.30"),
    "murf": Decimal("0.20"),
    "playht": Decimal("0.20"),
}

WORDS_PER_MINUTE = 150
CENT = Decimal("0.0001")


def video_cost(provider: str, duration_seconds: float | None, script: str) -> Decimal | None:
    """Estimated cost of a render; the duration is estimated from the script when unknown."""
    rate = VIDEO_USD_PER_MINUTE.get(provider)
    if rate is None:
        return None
    seconds = duration_seconds or len(script.split()) / WORDS_PER_MINUTE * 60
    return (rate * Decimal(str(seconds)) / 60).quantize(CENT)


def voice_cost(provider: str, characters: int) -> Decimal | None:
    rate = VOICE_USD_PER_1K_CHARS.get(provider)
    if rate is None:
        return None
    return (rate * Decimal(characters) / 1000).quantize(CENT)


def format_usd(amount: Decimal | None) -> str:
    return "-" if amount is None else f"${amount:.4f}"
