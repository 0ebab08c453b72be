"""Fault knobs for the sandbox: latency, error rate, 429 with Retry-After, timeouts.

Knobs are per provider and can be changed while the sandbox runs (``PUT /_sandbox/faults``).
Injected errors use the vendor's own error body, supplied by its vendor module.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_rate: float = 0.0
    retry_after_seconds: float = 1.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    job_seconds: float = 2.0
    job_failure_rate: float = 0.0

    def update(self, values: dict) -> None:
        """Apply knobs all or nothing: one bad key or value changes none of them."""
        known = {f.name for f in fields(self)}
        if not isinstance(values, dict):
            raise ValueError("send a JSON object of knob: value")
        clean: dict[str, float | int] = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault knob {key!r}; known: {', '.join(sorted(known))}")
            clean[key] = int(value) if key == "error_status" else float(value)
            if clean[key] < 0:
                raise ValueError(f"fault knob {key!r} must not be negative")
        for key, value in clean.items():
            setattr(self, key, value)

    def to_dict(self) -> dict:
        return asdict(self)

    def draw(self, rng: random.Random) -> str | None:
        """Which fault, if any, this request gets: 'timeout', 'rate_limit', 'error' or None."""
        roll = rng.random()
        for name, rate in (
            ("timeout", self.timeout_rate),
            ("rate_limit", self.rate_limit_rate),
            ("error", self.error_rate),
        ):
            if roll < rate:
                return name
            roll -= rate
        return None
