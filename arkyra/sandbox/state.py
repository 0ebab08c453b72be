"""Sandbox state shared by the vendor emulators: stores, job clocks, faults and call counts."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from arkyra.sandbox.faults import Faults


@dataclass
class SandboxJob:
    """A vendor job whose status follows the clock: queued, then running, then final."""

    id: str
    created: float
    seconds: float
    fails: bool
    data: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False

    def phase(self, now: float | None = None) -> str:
        """'queued' for the first 10 %, 'running' until ``seconds``, then 'succeeded'/'failed'."""
        if self.cancelled:
            return "cancelled"
        elapsed = (time.monotonic() if now is None else now) - self.created
        if elapsed < self.seconds * 0.1:
            return "queued"
        if elapsed < self.seconds:
            return "running"
        return "failed" if self.fails else "succeeded"

    def progress(self, now: float | None = None) -> float:
        elapsed = (time.monotonic() if now is None else now) - self.created
        return max(0.0, min(1.0, elapsed / self.seconds)) if self.seconds else 1.0


class SandboxState:
    """Everything the emulators remember; one instance per sandbox app."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults: dict[str, Faults] = {}
        self.calls: Counter[str] = Counter()
        self.paid_calls: Counter[str] = Counter()
        self.stores: dict[str, dict[str, Any]] = {}

    def faults_for(self, provider: str) -> Faults:
        with self.lock:
            return self.faults.setdefault(provider, Faults())

    def store(self, provider: str) -> dict[str, Any]:
        with self.lock:
            return self.stores.setdefault(provider, {})

    def count(self, provider: str, route: str, *, paid: bool = False) -> None:
        """Count a call; ``paid=True`` (from a vendor module) counts only the paid work, since
        the fault injector has already counted the request itself."""
        with self.lock:
            if paid:
                self.paid_calls[provider] += 1
            else:
                self.calls[f"{provider} {route}"] += 1

    def new_job(self, provider: str, job_id: str, **data: Any) -> SandboxJob:
        faults = self.faults_for(provider)
        job = SandboxJob(
            id=job_id,
            created=time.monotonic(),
            seconds=faults.job_seconds,
            fails=self.rng.random() < faults.job_failure_rate or bool(data.pop("fail", False)),
            data=data,
        )
        self.store(provider).setdefault("jobs", {})[job_id] = job
        return job

    def job(self, provider: str, job_id: str) -> SandboxJob | None:
        return self.store(provider).get("jobs", {}).get(job_id)

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.calls.clear()
            self.paid_calls.clear()
            self.stores.clear()
