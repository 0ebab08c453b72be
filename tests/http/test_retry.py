"""Same-provider retries: Retry-After parsing and which errors are tried again, how often."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from tenacity import RetryCallState

from arkyra.errors import (
    BadRequest,
    ContentRejected,
    InvalidCredentials,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.http import retry
from arkyra.http.retry import call_with_retries, parse_retry_after

NOW = 1_700_000_000.0


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


# -- parse_retry_after --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": " 7 "}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": http_date(NOW + 30)}, 30.0),
        ({"retry-after": http_date(NOW - 30)}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "Wed, 99 Foo 2025 00:00:00 GMT"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_reads_httpx_headers_case_insensitively() -> None:
    headers = httpx.Headers({"Retry-After": "3", "X-Other": "1"})
    assert parse_retry_after(headers, now=NOW) == 3.0
    assert parse_retry_after(httpx.Headers({"Retry-After-Ms": "1500"}), now=NOW) == 1.5


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3600"}, 60.0),
        ({"retry-after": http_date(NOW + 3600)}, 60.0),
        ({"retry-after-ms": "3600000"}, 60.0),
        ({"retry-after": "12"}, 12.0),
    ],
)
def test_parse_retry_after_caps_at_max_wait(headers: dict[str, str], expected: float) -> None:
    assert parse_retry_after(headers, now=NOW, max_wait=60.0) == expected


def test_an_http_date_is_measured_from_now() -> None:
    future = http_date(time.time() + 120)
    seconds = parse_retry_after({"retry-after": future})
    assert seconds is not None
    assert 115 <= seconds <= 121


def test_an_http_date_in_the_past_means_retry_at_once() -> None:
    assert parse_retry_after({"retry-after": http_date(NOW - 5)}, now=NOW) == 0.0


@pytest.mark.parametrize("headers", [{"retry-after": "-5"}, {"retry-after-ms": "-100"}])
def test_a_negative_delta_is_invalid(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=NOW) is None


def test_a_negative_delta_never_means_a_negative_wait() -> None:
    """What the current code does: whatever the verdict above, never wait less than zero."""
    for headers in ({"retry-after": "-5"}, {"retry-after-ms": "-100"}):
        result = parse_retry_after(headers, now=NOW)
        assert result is None or result >= 0


# -- call_with_retries --------------------------------------------------------------------------


class Script:
    """An attempt function that raises the scripted errors in order, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record each wait ``retry._wait`` computes, and sleep not at all.

    Tenacity computes a wait after every retryable failure, the last one included (it checks
    ``stop`` afterwards), so a wait recorded is not always a wait slept.
    """
    recorded: list[float] = []
    real_wait: Callable[[RetryCallState], float] = retry._wait

    def fast_wait(state: RetryCallState) -> float:
        recorded.append(real_wait(state))
        return 0.0

    monkeypatch.setattr(retry, "_wait", fast_wait)
    return recorded


def transient() -> Transient:
    return Transient("upstream hiccup", provider="test", status=503)


def rate_limited(after: float | None) -> RateLimited:
    return RateLimited("slow down", retry_after=after, provider="test", status=429)


async def run(script: Callable[[], Awaitable[str]], **kwargs: object) -> str:
    options: dict[str, object] = {"attempts": 3, "max_wait": 5.0, **kwargs}
    return await call_with_retries(script, **options)  # type: ignore[arg-type]


async def test_success_needs_one_attempt(waits: list[float]) -> None:
    script = Script()
    assert await run(script) == "ok"
    assert script.calls == 1
    assert waits == []


async def test_transient_is_retried_then_succeeds(waits: list[float]) -> None:
    script = Script(transient(), transient())
    assert await run(script) == "ok"
    assert script.calls == 3
    assert len(waits) == 2
    assert all(0 <= w <= 8 for w in waits)


async def test_rate_limited_waits_retry_after(waits: list[float]) -> None:
    script = Script(rate_limited(0.01), rate_limited(0.03))
    assert await run(script) == "ok"
    assert script.calls == 3
    assert waits == [0.01, 0.03]


async def test_rate_limited_without_retry_after_backs_off(waits: list[float]) -> None:
    script = Script(rate_limited(None))
    assert await run(script) == "ok"
    assert script.calls == 2
    assert len(waits) == 1
    assert 0 <= waits[0] <= 8


async def test_rate_limited_over_max_wait_is_not_retried(waits: list[float]) -> None:
    script = Script(rate_limited(30.0))
    with pytest.raises(RateLimited) as caught:
        await run(script, max_wait=2.0)
    assert caught.value.retry_after == 30.0
    assert script.calls == 1
    assert waits == []


async def test_rate_limited_exactly_at_max_wait_is_retried(waits: list[float]) -> None:
    script = Script(rate_limited(2.0))
    assert await run(script, max_wait=2.0) == "ok"
    assert waits == [2.0]


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("bad field", provider="test", status=400),
        InvalidCredentials("bad key", provider="test", status=401),
        QuotaExhausted("no credits", provider="test", status=402),
        ContentRejected("policy", provider="test", status=451),
        ProviderError("unknown", provider="test"),
        ValueError("a bug, not a provider error"),
    ],
)
async def test_other_errors_are_not_retried(waits: list[float], error: BaseException) -> None:
    script = Script(error)
    with pytest.raises(type(error)):
        await run(script)
    assert script.calls == 1
    assert waits == []


@pytest.mark.parametrize("attempts", [1, 2, 4])
async def test_attempts_are_bounded(waits: list[float], attempts: int) -> None:
    script = Script(*(transient() for _ in range(10)))
    with pytest.raises(Transient):
        await run(script, attempts=attempts)
    assert script.calls == attempts


async def test_the_last_error_is_raised_as_is(waits: list[float]) -> None:
    last = Transient("third time", provider="test", status=502)
    with pytest.raises(Transient) as caught:
        await run(Script(transient(), transient(), last))
    assert caught.value is last


async def test_retry_if_narrows_what_is_retried(waits: list[float]) -> None:
    script = Script(transient(), rate_limited(0.01))
    with pytest.raises(Transient):
        await run(script, retry_if=lambda exc: isinstance(exc, RateLimited))
    assert script.calls == 1

    script = Script(rate_limited(0.01), transient())
    with pytest.raises(Transient):
        await run(script, retry_if=lambda exc: isinstance(exc, RateLimited))
    assert script.calls == 2


async def test_retry_if_cannot_widen_what_is_retried(waits: list[float]) -> None:
    script = Script(BadRequest("no", provider="test", status=400))
    with pytest.raises(BadRequest):
        await run(script, retry_if=lambda exc: True)
    assert script.calls == 1


async def test_the_real_wait_sleeps_retry_after() -> None:
    """Unpatched: a tiny Retry-After is really waited for."""
    script = Script(rate_limited(0.05))
    started = time.monotonic()
    assert await run(script) == "ok"
    assert time.monotonic() - started >= 0.045
    assert script.calls == 2
