"""Bearer JWTs: only well-signed, current tokens of the configured algorithm get in."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from arkyra.config import Settings
from tests.api.conftest import API_URL

PROTECTED = "/third-party"


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    values: dict[str, object] = {
        "sub": "user-1",
        "org_id": "org-a",
        "role": "admin",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def secret_of(settings: Settings) -> str:
    return settings.require("jwt_secret")


def b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def status_for(api: httpx.AsyncClient, token: str) -> httpx.Response:
    return await api.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


async def test_a_valid_token_is_accepted(api: httpx.AsyncClient, db_settings: Settings) -> None:
    token = jwt.encode(claims(), secret_of(db_settings), algorithm="HS256")
    assert (await status_for(api, token)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer a.b.c"},
    ],
)
async def test_missing_or_malformed_credentials_are_401(
    api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_refused(await api.get(PROTECTED, headers=headers))


async def test_expired_token(api: httpx.AsyncClient, db_settings: Settings) -> None:
    past = int(time.time()) - 3600
    token = jwt.encode(claims(iat=past, nbf=past, exp=past + 60), secret_of(db_settings))
    response = await status_for(api, token)
    assert_refused(response)
    assert "expired" in response.json()["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_token_not_yet_valid(api: httpx.AsyncClient, db_settings: Settings) -> None:
    future = int(time.time()) + 3600
    token = jwt.encode(claims(nbf=future, exp=future + 60), secret_of(db_settings))
    assert_refused(await status_for(api, token))


async def test_token_signed_with_another_secret(api: httpx.AsyncClient) -> None:
    token = jwt.encode(claims(), "another-secret-that-is-long-enough-000000")
    assert_refused(await status_for(api, token))


async def test_tampered_payload(api: httpx.AsyncClient, db_settings: Settings) -> None:
    token = jwt.encode(claims(org_id="org-a"), secret_of(db_settings))
    header, _, signature = token.split(".")
    forged = f"{header}.{b64(claims(org_id='org-b'))}.{signature}"
    assert_refused(await status_for(api, forged))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_refused(api: httpx.AsyncClient, alg: str) -> None:
    token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims())}."
    assert_refused(await status_for(api, token))


def rsa_keys() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


async def test_rs256_token_is_refused(api: httpx.AsyncClient) -> None:
    private, _ = rsa_keys()
    token = jwt.encode(claims(), private, algorithm="RS256")
    assert_refused(await status_for(api, token))


async def test_algorithm_confusion_with_a_public_key_is_refused(api: httpx.AsyncClient) -> None:
    """HS256 signed with an RSA public key as the HMAC secret (the classic confusion)."""
    import hashlib
    import hmac

    _, public = rsa_keys()
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims())}"
    digest = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert_refused(await status_for(api, f"{signing_input}.{signature}"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_other_hmac_algorithm_is_refused(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    token = jwt.encode(claims(), secret_of(db_settings), algorithm="HS512")
    assert_refused(await status_for(api, token))


@pytest.mark.parametrize(
    "overrides",
    [
        {"org_id": None},
        {"org_id": ""},
        {"org_id": 42},
        {"role": "owner"},
        {"role": None},
        {"sub": None},
        {"exp": None},
    ],
)
async def test_missing_or_bad_claims(
    api: httpx.AsyncClient, db_settings: Settings, overrides: dict[str, object]
) -> None:
    payload = claims()
    for key, value in overrides.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    token = jwt.encode(payload, secret_of(db_settings))
    assert_refused(await status_for(api, token))


async def test_issuer_and_audience_when_configured(
    make_app: Callable[..., FastAPI], db_settings: Settings
) -> None:
    from asgi_lifespan import LifespanManager

    configured = db_settings.model_copy(update={"jwt_issuer": "arkyra", "jwt_audience": "api"})
    app = make_app(configured)
    secret = secret_of(db_settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            good = jwt.encode(claims(iss="arkyra", aud="api"), secret)
            assert (await status_for(api, good)).status_code == 200
            for bad in (
                claims(),
                claims(iss="someone-else", aud="api"),
                claims(iss="arkyra", aud="other"),
            ):
                assert_refused(await status_for(api, jwt.encode(bad, secret)))


async def test_members_cannot_use_admin_routes(
    api: httpx.AsyncClient, auth: Callable[..., dict[str, str]]
) -> None:
    member = auth("org-a", "member")
    connect = await api.post(
        "/third-party/heygen", json={"fields": {"api_key": "hg_x_member_key"}}, headers=member
    )
    assert connect.status_code == 403
    assert connect.json()["error"] == "forbidden"
    delete = await api.delete("/third-party/some-id", headers=member)
    assert delete.status_code == 403
    assert (await api.get("/third-party", headers=member)).status_code == 200


async def test_open_operational_routes(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/metrics")).status_code == 200
