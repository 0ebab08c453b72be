"""What the Google provider test files (GA4, Google Sheets, Looker Studio, the auth) share.

Only the service-account plumbing lives here: a test RSA key and the key JSON built from it, the
credentials that carry it, an empty token cache per test, the provider pointed at Google's real
URLs, a respx router that answers the token endpoint, the sandbox registration of the same key
and the Google error envelope. Each vendor's URLs, report shapes and sandbox seeding stay in its
own file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from arkyra.config import Settings
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.content.google_auth import TOKEN_CACHE
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import google_oauth

P = TypeVar("P", bound=ThirdPartyProvider)

TOKEN_URL = "https://oauth2.googleapis.com/token"
PROJECT = "arkyra-test"


# -- keys and tokens ---------------------------------------------------------------------------


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit key, the size Google issues for service accounts."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_of(key: rsa.RSAPrivateKey) -> str:
    """The unencrypted PKCS#8 PEM that Google puts in a key file's ``private_key``."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def service_account_key(
    key: rsa.RSAPrivateKey, email: str, key_id: str, **extra: str
) -> dict[str, str]:
    """A service-account key file for ``email`` holding ``key``, as Google's console writes it."""
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": key_id,
        "private_key": pem_of(key),
        "client_email": email,
        **extra,
    }


def token_ok(value: str = "ya29.test-token", expires_in: int = 3599) -> httpx.Response:
    """The token endpoint's answer to a good JWT-bearer exchange."""
    return httpx.Response(
        200, json={"access_token": value, "expires_in": expires_in, "token_type": "Bearer"}
    )


def token_route(router: respx.MockRouter, value: str) -> respx.Route:
    """Answer every exchange on ``router`` with the access token ``value``."""
    return router.post(TOKEN_URL).mock(return_value=token_ok(value))


def sent_assertion(route: respx.Route) -> str:
    """The signed JWT in the last exchange that reached the token ``route``."""
    return parse_qs(route.calls.last.request.content.decode())["assertion"][0]


def token_claims(route: respx.Route) -> dict[str, Any]:
    """The claims of that JWT, unverified: for checking what was asked for."""
    return jwt.decode(sent_assertion(route), options={"verify_signature": False})


def google_error(code: int, status: str, message: str, **detail: Any) -> dict[str, Any]:
    """Google's error envelope; ``detail`` becomes a single ``google.rpc.ErrorInfo``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if detail:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", **detail}]
    return {"error": error}


def register_service_account(
    state: SandboxState, key: rsa.RSAPrivateKey, key_json: Mapping[str, str], **extra: Any
) -> None:
    """Tell the google-oauth sandbox to trust ``key`` for the account ``key_json`` names."""
    google_oauth.register_service_account(
        state,
        client_email=key_json["client_email"],
        public_key_pem=google_oauth.public_pem_of(key),
        private_key_id=key_json["private_key_id"],
        project_id=key_json["project_id"],
        **extra,
    )


# -- fixtures ----------------------------------------------------------------------------------


def service_account_fixtures(
    email: str, key_id: str, creds: Mapping[str, str], **key_fields: str
) -> tuple[Any, Any, Any]:
    """The ``rsa_key``, ``key_json`` and ``creds`` fixtures for one test service account.

    Assign them at module level (``rsa_key, key_json, creds = service_account_fixtures(...)``)
    so pytest finds them by name. The key is made once per module (key generation is slow);
    ``creds`` is the key JSON as a credential plus the vendor's own fields in ``creds``.
    """

    @pytest.fixture(scope="module")
    def rsa_key() -> rsa.RSAPrivateKey:
        return new_rsa_key()

    @pytest.fixture(scope="module")
    def key_json(rsa_key: rsa.RSAPrivateKey) -> dict[str, str]:
        return service_account_key(rsa_key, email, key_id, **key_fields)

    @pytest.fixture
    def creds_fixture(key_json: dict[str, str]) -> dict[str, str]:
        return {"service_account_json": json.dumps(key_json), **creds}

    return rsa_key, key_json, creds_fixture


def google_provider_fixtures(identifier: str, kind: type[P]) -> tuple[Any, Any]:
    """The autouse ``fresh_token_cache`` and the ``real`` provider fixtures for one vendor.

    Assign them at module level (``fresh_token_cache, real = google_provider_fixtures(...)``).
    ``real`` talks to Google's real URLs with one attempt per call; respx intercepts.
    """

    @pytest.fixture(autouse=True)
    def fresh_token_cache() -> Iterator[None]:
        """Tokens minted by one test are never reused by the next."""
        TOKEN_CACHE.clear()
        yield
        TOKEN_CACHE.clear()

    @pytest.fixture
    async def real(settings: Settings) -> AsyncIterator[P]:
        real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
        async with httpx.AsyncClient() as client:
            provider = get_provider(identifier, settings=real_settings, client=client)
            assert isinstance(provider, kind)
            yield provider

    return fresh_token_cache, real


def token_mock_fixture(access_token: str, base_url: str | None = None) -> Any:
    """A ``mock`` fixture: a respx router (on ``base_url``) whose token endpoint answers with
    ``access_token``, so each test only routes the API calls it is about."""

    @pytest.fixture
    def mock() -> Iterator[respx.MockRouter]:
        with respx.mock(base_url=base_url) as router:
            token_route(router, access_token)
            yield router

    return mock
