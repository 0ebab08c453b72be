"""ThirdPartyProvider.request(): retries that never pay twice, and errors mapped once.

A tiny provider defined here talks to an ``httpx.MockTransport``. It is registered in a copy of
the global registry, so no other test (or the catalogue) ever sees it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import pytest

from arkyra.config import Settings
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
from arkyra.providers import base
from arkyra.providers.base import AccountInfo, ThirdPartyProvider, api_key_field, third_party

IDENTIFIER = "test-echo-http-edge"
API_KEY = "sk-test-secret-0123456789"
CREDENTIALS = {"api_key": API_KEY}

Step = httpx.Response | type[httpx.TransportError]


class EchoProvider(ThirdPartyProvider):
    """The smallest provider: bearer auth and the base class's HTTP edge, nothing else."""

    default_base_url = "https://echo.invalid/v1"

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['api_key']}"}

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        await self.get_json("/me", credentials)
        return AccountInfo(id=self.fingerprint(credentials["api_key"]), name=self.title)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> Any:
        return await self.post_json("/echo", credentials, data)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> type[EchoProvider]:
    """Register EchoProvider in a throw-away copy of the registry."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_loaded", True)  # don't import every real provider here
    third_party(
        identifier=IDENTIFIER,
        title="Test echo",
        description="A provider that only exists in tests/http/test_provider_request.py.",
        category="automation",
        fields=[api_key_field()],
    )(EchoProvider)
    return EchoProvider


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exponential backoff sleeps for real; tests don't need to."""
    monkeypatch.setattr(retry, "_backoff", lambda state: 0.0)


class Vendor:
    """A MockTransport handler playing a scripted sequence of answers (the last one repeats)."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, httpx.Response):
            return step
        raise step("scripted failure", request=request)


@pytest.fixture
async def connect(
    settings: Settings, registered: type[EchoProvider]
) -> AsyncIterator[Callable[[Vendor], EchoProvider]]:
    """``connect(vendor)``: an EchoProvider whose client answers through ``vendor``."""
    clients: list[httpx.AsyncClient] = []

    def make(vendor: Vendor) -> EchoProvider:
        client = httpx.AsyncClient(transport=httpx.MockTransport(vendor))
        clients.append(client)
        return base.get_provider(IDENTIFIER, settings=settings, client=client)  # type: ignore[return-value]

    yield make
    for client in clients:
        await client.aclose()


def ok(body: Any = None) -> httpx.Response:
    return httpx.Response(200, json={"ok": True} if body is None else body)


def status(code: int, message: str = "vendor says no", **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": {"message": message}}, headers=headers)


# -- the request itself -------------------------------------------------------------------------


async def test_the_request_carries_auth_params_and_body(
    connect: Callable[[Vendor], EchoProvider], settings: Settings
) -> None:
    vendor = Vendor(ok({"echo": 1}))
    provider = connect(vendor)
    body = await provider.post_json("/echo", CREDENTIALS, {"text": "hi"}, params={"lang": "en"})
    assert body == {"echo": 1}
    (sent,) = vendor.requests
    assert sent.method == "POST"
    assert sent.url == httpx.URL(f"{settings.sandbox_url}/{IDENTIFIER}/echo?lang=en")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(sent.content) == {"text": "hi"}


async def test_the_provider_is_registered_under_its_identifier(
    registered: type[EchoProvider],
) -> None:
    assert base.provider_class(IDENTIFIER) is EchoProvider
    assert EchoProvider.identifier == IDENTIFIER


async def test_the_test_provider_does_not_leak_into_the_real_registry() -> None:
    assert IDENTIFIER not in base._REGISTRY


# -- retries ------------------------------------------------------------------------------------


async def test_get_is_retried_on_503_then_succeeds(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    vendor = Vendor(status(503), status(503), ok())
    response = await connect(vendor).request("GET", "/items", CREDENTIALS)
    assert response.status_code == 200
    assert len(vendor.requests) == 3


async def test_get_gives_up_after_the_configured_attempts(
    connect: Callable[[Vendor], EchoProvider], settings: Settings
) -> None:
    vendor = Vendor(status(503, "overloaded"))
    with pytest.raises(Transient) as caught:
        await connect(vendor).request("GET", "/items", CREDENTIALS)
    assert len(vendor.requests) == settings.http_max_attempts == 3
    assert caught.value.status == 503
    assert caught.value.message == "overloaded"


async def test_attempts_can_be_set_per_call(connect: Callable[[Vendor], EchoProvider]) -> None:
    vendor = Vendor(status(502))
    with pytest.raises(Transient):
        await connect(vendor).request("GET", "/items", CREDENTIALS, attempts=1)
    assert len(vendor.requests) == 1


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_idempotent_methods_are_retried(
    connect: Callable[[Vendor], EchoProvider], method: str
) -> None:
    vendor = Vendor(status(500), ok())
    await connect(vendor).request(method, "/items/1", CREDENTIALS)
    assert len(vendor.requests) == 2


async def test_post_is_not_retried_on_503(connect: Callable[[Vendor], EchoProvider]) -> None:
    vendor = Vendor(status(503), ok())
    with pytest.raises(Transient):
        await connect(vendor).request("POST", "/render", CREDENTIALS, json_body={"x": 1})
    assert len(vendor.requests) == 1


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError]
)
async def test_post_is_not_retried_when_the_request_may_have_been_processed(
    connect: Callable[[Vendor], EchoProvider], failure: type[httpx.TransportError]
) -> None:
    vendor = Vendor(failure, ok())
    with pytest.raises(Transient) as caught:
        await connect(vendor).request("POST", "/render", CREDENTIALS, json_body={"x": 1})
    assert len(vendor.requests) == 1
    assert caught.value.details == {"request_sent": True}
    assert caught.value.provider == IDENTIFIER


async def test_get_is_retried_on_a_read_timeout(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    vendor = Vendor(httpx.ReadTimeout, ok())
    await connect(vendor).request("GET", "/items", CREDENTIALS)
    assert len(vendor.requests) == 2


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_post_is_retried_when_it_never_left(
    connect: Callable[[Vendor], EchoProvider], failure: type[httpx.TransportError]
) -> None:
    vendor = Vendor(failure, ok())
    response = await connect(vendor).request("POST", "/render", CREDENTIALS, json_body={"x": 1})
    assert response.status_code == 200
    assert len(vendor.requests) == 2
    assert [json.loads(r.content) for r in vendor.requests] == [{"x": 1}, {"x": 1}]


async def test_post_is_retried_on_429(connect: Callable[[Vendor], EchoProvider]) -> None:
    vendor = Vendor(status(429, "slow down", **{"retry-after-ms": "10"}), ok())
    response = await connect(vendor).request("POST", "/render", CREDENTIALS, json_body={})
    assert response.status_code == 200
    assert len(vendor.requests) == 2


async def test_a_429_waiting_longer_than_allowed_is_not_retried(
    connect: Callable[[Vendor], EchoProvider], settings: Settings
) -> None:
    vendor = Vendor(status(429, "slow down", **{"Retry-After": "30"}), ok())
    with pytest.raises(RateLimited) as caught:
        await connect(vendor).request("GET", "/items", CREDENTIALS)
    assert caught.value.retry_after == 30.0 > settings.retry_after_max_seconds
    assert len(vendor.requests) == 1


async def test_a_post_marked_idempotent_is_retried_on_503(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    vendor = Vendor(status(503), ok())
    await connect(vendor).request(
        "POST", "/render", CREDENTIALS, json_body={}, idempotent=True,
        headers={"Idempotency-Key": "k1"},
    )  # fmt: skip
    assert len(vendor.requests) == 2
    assert all(r.headers["idempotency-key"] == "k1" for r in vendor.requests)


async def test_a_get_marked_not_idempotent_is_not_retried(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    vendor = Vendor(status(503), ok())
    with pytest.raises(Transient):
        await connect(vendor).request("GET", "/report", CREDENTIALS, idempotent=False)
    assert len(vendor.requests) == 1


# -- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, BadRequest),
        (401, InvalidCredentials),
        (402, QuotaExhausted),
        (403, InvalidCredentials),
        (404, BadRequest),
        (408, Transient),
        (409, Transient),
        (422, BadRequest),
        (429, RateLimited),
        (451, ContentRejected),
        (500, Transient),
        (502, Transient),
        (503, Transient),
        (529, Transient),
    ],
)
async def test_error_statuses_are_mapped(
    connect: Callable[[Vendor], EchoProvider], code: int, error: type[ProviderError]
) -> None:
    vendor = Vendor(status(code, f"the vendor's words for {code}"))
    with pytest.raises(ProviderError) as caught:
        await connect(vendor).request("POST", "/render", CREDENTIALS, json_body={}, attempts=1)
    assert type(caught.value) is error
    assert caught.value.status == code
    assert caught.value.provider == IDENTIFIER
    assert caught.value.message == f"the vendor's words for {code}"


async def test_429_carries_retry_after_from_the_header(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    vendor = Vendor(status(429, "slow down", **{"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        await connect(vendor).request("GET", "/items", CREDENTIALS, attempts=1)
    assert caught.value.retry_after == 7.0


async def test_429_without_retry_after_has_none(connect: Callable[[Vendor], EchoProvider]) -> None:
    vendor = Vendor(status(429))
    with pytest.raises(RateLimited) as caught:
        await connect(vendor).request("GET", "/items", CREDENTIALS, attempts=1)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "nested"}}, "nested"),
        ({"message": "flat"}, "flat"),
        ({"error": "just a string"}, "just a string"),
        ({"detail": "fastapi style"}, "fastapi style"),
        ({"unexpected": 1}, '{"unexpected": 1}'),
    ],
)
async def test_the_vendor_message_is_read_from_common_body_shapes(
    connect: Callable[[Vendor], EchoProvider], body: dict[str, Any], message: str
) -> None:
    vendor = Vendor(httpx.Response(400, json=body))
    with pytest.raises(BadRequest) as caught:
        await connect(vendor).request("GET", "/items", CREDENTIALS)
    assert caught.value.message == message


async def test_a_plain_text_error_body_becomes_the_message(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    vendor = Vendor(httpx.Response(400, text="  missing field 'name'  "))
    with pytest.raises(BadRequest, match="missing field 'name'"):
        await connect(vendor).request("GET", "/items", CREDENTIALS)


async def test_no_error_message_contains_the_api_key(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    for step in (status(401, "invalid key"), status(503), httpx.ConnectError, httpx.ReadTimeout):
        with pytest.raises(ProviderError) as caught:
            await connect(Vendor(step)).request("POST", "/render", CREDENTIALS, json_body={})
        assert API_KEY not in str(caught.value)
        assert API_KEY not in repr(caught.value.to_dict())


async def test_get_json_refuses_a_body_that_is_not_json(
    connect: Callable[[Vendor], EchoProvider],
) -> None:
    vendor = Vendor(httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(Transient, match="not JSON"):
        await connect(vendor).get_json("/items", CREDENTIALS)


async def test_a_vendor_echoing_the_key_is_redacted_centrally(settings) -> None:  # type: ignore[no-untyped-def]
    from arkyra.errors import InvalidCredentials
    from arkyra.providers.base import ThirdPartyProvider

    class Echo(ThirdPartyProvider):
        identifier = "test-echo-redaction"
        title = description = "echo"
        category = "content"
        fields = ()
        default_base_url = "https://vendor.test"

        def auth_headers(self, credentials):  # type: ignore[no-untyped-def]
            return {"Authorization": f"Bearer {credentials['api_key']}"}

        async def check_connection(self, credentials):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        async def send_data(self, credentials, data):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["Authorization"].split(" ", 1)[1]
        return httpx.Response(401, json={"error": {"message": f"bad key {key} for you"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = Echo(settings=settings.model_copy(update={"sandbox": False}), client=client)
        with pytest.raises(InvalidCredentials) as caught:
            await provider.request("GET", "/x", {"api_key": "sk-very-secret-123"})
    assert "sk-very-secret-123" not in str(caught.value)
    assert "[redacted]" in str(caught.value)
