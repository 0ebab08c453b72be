"""Google service-account auth: the key JSON, the signed JWT, the token exchange and its cache,
the Google error envelope, and the google-oauth sandbox that verifies assertions for real."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from arkyra.config import Settings
from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import get_provider
from arkyra.providers.content.google_auth import (
    ANALYTICS_READONLY,
    DATASTUDIO_READONLY,
    JWT_BEARER_GRANT,
    SHEETS_READONLY,
    ServiceAccount,
    TokenCache,
    build_assertion,
)
from arkyra.providers.content.google_sheets import GoogleSheetsProvider
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import google_oauth
from tests.providers.google_fixtures import (
    TOKEN_URL,
    google_error,
    google_provider_fixtures,
    new_rsa_key,
    register_service_account,
    sent_assertion,
    service_account_fixtures,
    token_claims,
    token_ok,
    token_route,
)

SHEETS = "https://sheets.googleapis.com"
EMAIL = "reader@arkyra-test.iam.gserviceaccount.com"
KEY_ID = "kid-0123456789abcdef"

rsa_key, key_json, creds = service_account_fixtures(
    EMAIL, KEY_ID, {"spreadsheet_id": "sheet-1"}, token_uri=TOKEN_URL
)
# Sheets (a Google provider) stands in for every provider that signs in with a service account.
fresh_token_cache, real = google_provider_fixtures("google-sheets", GoogleSheetsProvider)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    """A second key that no account trusts."""
    return new_rsa_key()


def assert_key_free(exc: BaseException, key_json: dict[str, str]) -> None:
    pem_body = key_json["private_key"].splitlines()[1]
    for text in (str(exc), repr(exc), json.dumps(getattr(exc, "errors", {}))):
        assert pem_body not in text
        assert "PRIVATE KEY" not in text


# -- the key JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["client_email", "private_key"])
def test_missing_key_is_invalid_input_naming_it(key_json: dict[str, str], missing: str) -> None:
    data = {k: v for k, v in key_json.items() if k != missing}
    with pytest.raises(InvalidInput) as info:
        ServiceAccount.from_json(json.dumps(data))
    assert missing in str(info.value)
    assert missing in info.value.errors["service_account_json"]
    assert_key_free(info.value, key_json)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("", "required"),
        (json.dumps({"type": "authorized_user", "client_id": "x"}), "service account"),
    ],
)
def test_malformed_key_json(raw: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        ServiceAccount.from_json(raw)


def test_unloadable_private_key_never_echoes_it(key_json: dict[str, str]) -> None:
    broken = {**key_json, "private_key": key_json["private_key"].replace("M", "%", 40)}
    account = ServiceAccount.from_json(json.dumps(broken))
    with pytest.raises(InvalidInput) as info:
        _ = account.signing_key
    assert "RSA private key" in str(info.value)
    assert_key_free(info.value, broken)


def test_repr_hides_the_private_key(key_json: dict[str, str]) -> None:
    account = ServiceAccount.from_json(json.dumps(key_json))
    assert "PRIVATE" not in repr(account)
    assert EMAIL in repr(account)
    assert (account.project_id, account.private_key_id) == ("arkyra-test", KEY_ID)


# -- the signed JWT ----------------------------------------------------------------------------


def test_assertion_claims_and_signature(
    key_json: dict[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    account = ServiceAccount.from_json(json.dumps(key_json))
    now = time.time()
    token = build_assertion(account, (SHEETS_READONLY, ANALYTICS_READONLY), TOKEN_URL, now=now)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": KEY_ID}
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)
    assert claims["iss"] == EMAIL
    assert claims["scope"] == f"{SHEETS_READONLY} {ANALYTICS_READONLY}"
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(now)
    assert claims["exp"] - claims["iat"] == 3600
    assert "sub" not in claims


def test_assertion_carries_sub_only_for_delegation(
    key_json: dict[str, str], rsa_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    account = ServiceAccount.from_json(json.dumps(key_json))
    token = build_assertion(
        account, (DATASTUDIO_READONLY,), TOKEN_URL, now=time.time(), subject="ana@acme.test",
        lifetime=99_999,
    )  # fmt: skip
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)
    assert claims["sub"] == "ana@acme.test"
    assert claims["exp"] - claims["iat"] == 3600  # capped at Google's maximum
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)


# -- the exchange and the cache ----------------------------------------------------------------


async def test_exchange_request_shape(
    real: GoogleSheetsProvider, key_json: dict[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    account = ServiceAccount.from_json(json.dumps(key_json))
    with respx.mock() as mock:
        route = token_route(mock, "ya29.abc")
        assert await real.access_token(account) == "ya29.abc"
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    assert form["grant_type"] == JWT_BEARER_GRANT == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(
        form["assertion"], rsa_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL
    )
    assert claims["scope"] == SHEETS_READONLY
    assert claims["iss"] == EMAIL


async def test_token_is_cached_per_account_and_scopes(
    real: GoogleSheetsProvider, key_json: dict[str, str]
) -> None:
    account = ServiceAccount.from_json(json.dumps(key_json))
    with respx.mock() as mock:
        route = mock.post(TOKEN_URL).mock(side_effect=[token_ok("t1"), token_ok("t2")])
        assert await real.access_token(account) == "t1"
        assert await real.access_token(account) == "t1"
        assert await real.access_token(account, (ANALYTICS_READONLY,)) == "t2"
    assert route.call_count == 2


async def test_concurrent_callers_mint_once(
    real: GoogleSheetsProvider, key_json: dict[str, str]
) -> None:
    account = ServiceAccount.from_json(json.dumps(key_json))

    async def slow_token(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return token_ok("shared")

    with respx.mock() as mock:
        route = mock.post(TOKEN_URL).mock(side_effect=slow_token)
        tokens = await asyncio.gather(*(real.access_token(account) for _ in range(8)))
    assert set(tokens) == {"shared"}
    assert route.call_count == 1


async def test_token_refreshed_shortly_before_expiry(
    real: GoogleSheetsProvider, key_json: dict[str, str]
) -> None:
    now = [1_000_000.0]
    real.token_cache = TokenCache(clock=lambda: now[0], refresh_margin=300)
    account = ServiceAccount.from_json(json.dumps(key_json))
    with respx.mock() as mock:
        route = mock.post(TOKEN_URL).mock(
            side_effect=[token_ok("first", 3600), token_ok("second", 3600)]
        )
        assert await real.access_token(account) == "first"
        now[0] += 3600 - 301  # still more than 5 minutes left
        assert await real.access_token(account) == "first"
        now[0] += 2  # inside the refresh margin
        assert await real.access_token(account) == "second"
    assert route.call_count == 2
    second_claims = token_claims(route)
    assert second_claims["iat"] == int(now[0])


async def test_api_401_with_cached_token_mints_again_once(
    real: GoogleSheetsProvider, creds: dict[str, str]
) -> None:
    unauthenticated = google_error(401, "UNAUTHENTICATED", "Invalid Credentials")
    meta = {"spreadsheetId": "sheet-1", "properties": {"title": "Plan"}}
    with respx.mock() as mock:
        tokens = mock.post(TOKEN_URL).mock(side_effect=[token_ok("old"), token_ok("new")])
        api = mock.get(f"{SHEETS}/v4/spreadsheets/sheet-1").mock(
            side_effect=[httpx.Response(401, json=unauthenticated), httpx.Response(200, json=meta)]
        )
        account = await real.check_connection(creds)
    assert account.id == EMAIL
    assert tokens.call_count == 2
    auth = [c.request.headers["Authorization"] for c in api.calls]
    assert auth == ["Bearer old", "Bearer new"]


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
         InvalidCredentials),
        (401, {"error": "unauthorized_client", "error_description": "Client is unauthorized"},
         InvalidCredentials),
        (400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope"},
         InvalidCredentials),
        (400, {"error": "invalid_request", "error_description": "Missing assertion"}, BadRequest),
        (429, {"error": "rate_limit_exceeded"}, RateLimited),
        (500, {"error": "internal_failure"}, Transient),
    ],
)  # fmt: skip
async def test_token_endpoint_errors(
    real: GoogleSheetsProvider,
    key_json: dict[str, str],
    status: int,
    body: dict[str, Any],
    error_class: type[ProviderError],
) -> None:
    account = ServiceAccount.from_json(json.dumps(key_json))
    with respx.mock() as mock:
        route = mock.post(TOKEN_URL).respond(status, json=body)
        with pytest.raises(error_class) as info:
            await real.access_token(account)
    assert info.value.provider == "google-sheets"
    assert info.value.status == status
    assert_key_free(info.value, key_json)
    assertion = sent_assertion(route)
    assert assertion not in str(info.value)


# -- the Google error envelope -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (401, google_error(401, "UNAUTHENTICATED", "Invalid Credentials"), InvalidCredentials),
        (403, google_error(403, "PERMISSION_DENIED", "No access"), InvalidCredentials),
        (400, google_error(400, "INVALID_ARGUMENT", "Unable to parse range"), BadRequest),
        (404, google_error(404, "NOT_FOUND", "Requested entity was not found."), BadRequest),
        (400, google_error(400, "FAILED_PRECONDITION", "Not supported"), BadRequest),
        (503, google_error(503, "UNAVAILABLE", "The service is currently unavailable."), Transient),
        (500, google_error(500, "INTERNAL", "Internal error encountered."), Transient),
        (504, google_error(504, "DEADLINE_EXCEEDED", "Deadline"), Transient),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded per minute"), RateLimited),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Exhausted property tokens per day."),
         QuotaExhausted),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.",
                           reason="RATE_LIMIT_EXCEEDED",
                           metadata={"quota_limit": "ReadRequestsPerDayPerProject"}),
         QuotaExhausted),
        (403, google_error(403, "PERMISSION_DENIED", "Rate Limit Exceeded",
                           reason="rateLimitExceeded"), RateLimited),
    ],
)  # fmt: skip
def test_google_envelope_mapping(
    settings: Settings, status: int, body: dict[str, Any], error_class: type[ProviderError]
) -> None:
    provider = get_provider("google-sheets", settings=settings)
    response = httpx.Response(status, json=body, headers={"Retry-After": "7"})
    error = provider.error_from_response(response)
    assert type(error) is error_class
    assert error.status == status
    assert error.code == body["error"]["status"]
    assert body["error"]["message"] in error.message
    if isinstance(error, RateLimited):
        assert error.retry_after == 7.0


def test_non_json_gateway_error_is_transient(settings: Settings) -> None:
    provider = get_provider("google-sheets", settings=settings)
    error = provider.error_from_response(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert isinstance(error, Transient)


# -- the google-oauth sandbox ------------------------------------------------------------------


async def post_assertion(client: httpx.AsyncClient, assertion: str) -> httpx.Response:
    form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
    return await client.post("/google-oauth/token", data=form)


async def test_sandbox_mints_for_a_registered_key(
    provider_factory: Any,
    sandbox_state: SandboxState,
    key_json: dict[str, str],
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    register_service_account(sandbox_state, rsa_key, key_json)
    provider = provider_factory("google-sheets")
    account = ServiceAccount.from_json(json.dumps(key_json))
    token = await provider.access_token(account)
    info = sandbox_state.store("google-oauth")["tokens"][token]
    assert info.client_email == EMAIL
    assert info.scopes == {SHEETS_READONLY}
    assert await provider.access_token(account) == token
    assert sandbox_state.calls["google-oauth POST /google-oauth/token"] == 1


async def test_sandbox_refuses_unknown_account_and_wrong_key(
    provider_factory: Any,
    sandbox_state: SandboxState,
    key_json: dict[str, str],
    other_key: rsa.RSAPrivateKey,
) -> None:
    provider = provider_factory("google-sheets")
    account = ServiceAccount.from_json(json.dumps(key_json))
    with pytest.raises(InvalidCredentials, match="account not found") as info:
        await provider.access_token(account)
    assert info.value.code == "invalid_grant"
    # the email is known, but with a different public key
    register_service_account(sandbox_state, other_key, key_json)
    with pytest.raises(InvalidCredentials, match="Invalid JWT Signature"):
        await provider.access_token(account)


async def test_sandbox_checks_lifetime_audience_grant_and_delegation(
    sandbox_client: httpx.AsyncClient,
    sandbox_state: SandboxState,
    key_json: dict[str, str],
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    register_service_account(sandbox_state, rsa_key, key_json)
    account = ServiceAccount.from_json(json.dumps(key_json))
    audience = "http://sandbox.test/google-oauth/token"
    now = time.time()

    too_long = jwt.encode(
        {"iss": EMAIL, "scope": SHEETS_READONLY, "aud": audience, "iat": int(now),
         "exp": int(now) + 7200},
        rsa_key, algorithm="RS256", headers={"kid": KEY_ID},
    )  # fmt: skip
    response = await post_assertion(sandbox_client, too_long)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "short-lived" in response.json()["error_description"]

    wrong_aud = build_assertion(account, (SHEETS_READONLY,), "https://evil.test/token", now=now)
    response = await post_assertion(sandbox_client, wrong_aud)
    assert response.json()["error_description"] == "Invalid JWT: Failed audience check."

    good = build_assertion(account, (SHEETS_READONLY,), audience, now=now)
    response = await sandbox_client.post(
        "/google-oauth/token", data={"grant_type": "client_credentials", "assertion": good}
    )
    assert response.json()["error"] == "unsupported_grant_type"
    response = await post_assertion(sandbox_client, good)
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["expires_in"] == 3599

    no_sub = build_assertion(account, (DATASTUDIO_READONLY,), audience, now=now)
    response = await post_assertion(sandbox_client, no_sub)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")
    with_sub = build_assertion(account, (DATASTUDIO_READONLY,), audience, now=now, subject="a@b.c")
    response = await post_assertion(sandbox_client, with_sub)
    assert (response.status_code, response.json()["error"]) == (401, "unauthorized_client")
    register_service_account(sandbox_state, rsa_key, key_json, domain_wide_delegation=True)
    response = await post_assertion(sandbox_client, with_sub)
    assert response.status_code == 200


async def test_sandbox_seed_route_registers_or_creates_accounts(
    sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState, rsa_key: rsa.RSAPrivateKey
) -> None:
    response = await sandbox_client.post(
        "/google-oauth/_sandbox/service-accounts",
        json={"client_email": EMAIL, "public_key_pem": google_oauth.public_pem_of(rsa_key)},
    )
    assert response.status_code == 201
    assert EMAIL in sandbox_state.store("google-oauth")["service_accounts"]
    created = (await sandbox_client.post("/google-oauth/_sandbox/service-accounts", json={})).json()
    account = ServiceAccount.from_json(json.dumps(created))
    assertion = build_assertion(
        account, (SHEETS_READONLY,), "http://sandbox.test/google-oauth/token", now=time.time()
    )
    assert (await post_assertion(sandbox_client, assertion)).status_code == 200


async def test_sandbox_injected_token_faults_use_the_oauth_shape(
    sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("google-oauth").error_rate = 1.0
    response = await sandbox_client.post("/google-oauth/token", data={})
    assert response.status_code == 503
    assert response.json()["error"] == "internal_failure"
