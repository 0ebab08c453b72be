"""Google's OAuth token endpoint for service accounts, plus the Google helpers the Sheets, GA4
and Looker Studio emulators share (bearer-token checks, the ``{error:{...}}`` envelope).

``POST /google-oauth/token`` takes ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and
an RS256 ``assertion`` and verifies it for real: the signature against a *registered* public key,
``aud`` (this endpoint's own URL or Google's real token URI), ``iat``/``exp`` (at most 1 h) and
``scope``. Unknown accounts and bad signatures answer ``400 invalid_grant`` as Google does.

Registry of known service accounts (in the state store): an account is known once registered,
either from Python (:func:`register_service_account` with the public key of a key the test made,
or :func:`create_service_account`, which makes a key pair and returns the full key JSON) or over
HTTP with ``POST /google-oauth/_sandbox/service-accounts`` (body ``{client_email,
public_key_pem, private_key_id?, project_id?, domain_wide_delegation?}``; without
``public_key_pem`` the sandbox makes the key and answers with the key JSON, for the demo).
Datastudio scopes need domain-wide delegation: no ``sub`` gives ``400 invalid_scope``, and an
account not marked for delegation gives ``401 unauthorized_client``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "google-oauth"

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
MAX_ASSERTION_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300
DWD_SCOPE_PREFIX = "https://www.googleapis.com/auth/datastudio"

_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)
_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GRPC_MESSAGE = {
    "INTERNAL": "Internal error encountered.",
    "UNAVAILABLE": "The service is currently unavailable.",
    "DEADLINE_EXCEEDED": "The request was not completed in time.",
    "UNAUTHENTICATED": "Request had invalid authentication credentials.",
    "PERMISSION_DENIED": "The caller does not have permission",
    "NOT_FOUND": "Requested entity was not found.",
}


@dataclass(frozen=True)
class TokenInfo:
    """What the sandbox remembers about an access token it issued."""

    client_email: str
    scopes: frozenset[str]
    subject: str | None
    expires_at: float


# -- the registry ------------------------------------------------------------------------------


def _store(state: SandboxState) -> dict[str, Any]:
    store = state.store(IDENTIFIER)
    store.setdefault("service_accounts", {})
    store.setdefault("tokens", {})
    return store


def register_service_account(
    state: SandboxState,
    *,
    client_email: str,
    public_key_pem: str,
    private_key_id: str | None = None,
    project_id: str | None = None,
    domain_wide_delegation: bool = False,
) -> None:
    """Make ``client_email`` known, trusting ``public_key_pem`` (under ``private_key_id``)."""
    accounts = _store(state)["service_accounts"]
    entry = accounts.setdefault(client_email, {"keys": {}, "project_id": project_id})
    entry["keys"][private_key_id or ""] = public_key_pem
    entry["project_id"] = project_id or entry.get("project_id")
    entry["domain_wide_delegation"] = domain_wide_delegation or entry.get(
        "domain_wide_delegation", False
    )


def create_service_account(
    state: SandboxState,
    *,
    client_email: str | None = None,
    project_id: str = "arkyra-sandbox",
    domain_wide_delegation: bool = False,
) -> dict[str, str]:
    """Make a key pair, register it, and return the key JSON a user would paste."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_id = secrets.token_hex(20)
    email = client_email or f"sandbox-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
    register_service_account(
        state,
        client_email=email,
        public_key_pem=public_pem_of(key),
        private_key_id=key_id,
        project_id=project_id,
        domain_wide_delegation=domain_wide_delegation,
    )
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email,
        "client_id": str(int(key_id[:15], 16)),
        "token_uri": GOOGLE_TOKEN_URI,
    }


def public_pem_of(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def issue_token(
    state: SandboxState,
    client_email: str,
    scopes: Collection[str],
    *,
    subject: str | None = None,
    lifetime: float | None = None,
) -> tuple[str, float]:
    """Record a new access token; return it with its lifetime in seconds."""
    store = _store(state)
    seconds = float(lifetime or store.get("token_lifetime_seconds", 3599))
    token = "ya29.sandbox-" + secrets.token_urlsafe(24)
    store["tokens"][token] = TokenInfo(
        client_email=client_email,
        scopes=frozenset(scopes),
        subject=subject,
        expires_at=time.time() + seconds,
    )
    return token, seconds


# -- helpers for the Google API emulators ------------------------------------------------------


def google_error(
    http_status: int,
    message: str,
    *,
    status: str | None = None,
    reason: str | None = None,
    domain: str = "googleapis.com",
    metadata: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Google's error envelope: ``{"error": {"code", "message", "status", "details"}}``."""
    error: dict[str, Any] = {
        "code": http_status,
        "message": message,
        "status": status or _GRPC_STATUS.get(http_status, "UNKNOWN"),
    }
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": domain,
                "metadata": metadata or {},
            }
        ]
    return JSONResponse({"error": error}, status_code=http_status, headers=headers)


def api_error_response(
    kind: str, status: int, retry_after: float | None, *, service: str
) -> Response:
    """An injected fault in the shape a Google API (``service``) answers with."""
    if kind == "rate_limit" or status == 429:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return google_error(
            429,
            f"Quota exceeded for quota metric 'Read requests' and limit "
            f"'Read requests per minute per user' of service '{service}'.",
            reason="RATE_LIMIT_EXCEEDED",
            domain=service,
            metadata={"service": service, "quota_limit": "ReadRequestsPerMinutePerUser"},
            headers=headers,
        )
    grpc = _GRPC_STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return google_error(status, _GRPC_MESSAGE.get(grpc, "Request failed."), status=grpc)


def authorize(
    state: SandboxState, request: Request, accepted_scopes: Collection[str]
) -> TokenInfo | Response:
    """The token behind ``Authorization: Bearer``, or the error response Google would give."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return google_error(
            401,
            "Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential.",
            reason="CREDENTIALS_MISSING",
        )
    info = _store(state)["tokens"].get(token.strip())
    if info is None or info.expires_at <= time.time():
        return google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
            reason="ACCESS_TOKEN_EXPIRED" if info else "ACCESS_TOKEN_TYPE_UNSUPPORTED",
        )
    if not info.scopes & set(accepted_scopes):
        return google_error(
            403,
            "Request had insufficient authentication scopes.",
            reason="ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        )
    return info


# -- the token endpoint ------------------------------------------------------------------------


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _public_keys(entry: dict[str, Any], key_id: str | None) -> list[str]:
    keys: dict[str, str] = entry["keys"]
    if key_id and key_id in keys:
        return [keys[key_id]]
    if key_id:
        return []
    return list(keys.values())


def _verify(assertion: str, entry: dict[str, Any], audiences: list[str]) -> dict[str, Any] | str:
    """The verified claims, or Google's ``invalid_grant`` description of what is wrong."""
    try:
        key_id = jwt.get_unverified_header(assertion).get("kid")
    except jwt.PyJWTError:
        return "Invalid JWT."
    for public_pem in _public_keys(entry, key_id):
        try:
            claims = jwt.decode(
                assertion,
                public_pem,
                algorithms=["RS256"],
                audience=audiences,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            return _SHORT_LIVED
        except jwt.InvalidAudienceError:
            return "Invalid JWT: Failed audience check."
        except jwt.PyJWTError:
            return "Invalid JWT."
        if claims["exp"] - claims["iat"] > MAX_ASSERTION_SECONDS:
            return _SHORT_LIVED
        return claims
    return "Invalid JWT Signature."


def routes(state: SandboxState) -> list[BaseRoute]:
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return _oauth_error(
                "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}"
            )
        assertion = form.get("assertion", "")
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "Invalid JWT.")
        entry = _store(state)["service_accounts"].get(issuer)
        if entry is None:
            return _oauth_error("invalid_grant", "Invalid grant: account not found")
        own_url = str(request.url.replace(query=""))
        claims = _verify(assertion, entry, [own_url, GOOGLE_TOKEN_URI])
        if isinstance(claims, str):
            return _oauth_error("invalid_grant", claims)
        scopes = str(claims.get("scope") or "").split()
        if not scopes:
            return _oauth_error(
                "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        subject = claims.get("sub")
        if any(s.startswith(DWD_SCOPE_PREFIX) for s in scopes):
            if not subject:
                return _oauth_error(
                    "invalid_scope",
                    "Invalid OAuth scope: this scope needs domain-wide delegation (a sub claim).",
                )
            if not entry.get("domain_wide_delegation"):
                return _oauth_error(
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or "
                    "client not authorized for any of the scopes requested.",
                    status=401,
                )
        value, lifetime = issue_token(state, issuer, scopes, subject=subject)
        return JSONResponse(
            {"access_token": value, "expires_in": int(lifetime), "token_type": "Bearer"}
        )

    async def seed_service_account(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        delegation = bool(body.get("domain_wide_delegation", False))
        if body.get("public_key_pem"):
            if not body.get("client_email"):
                return JSONResponse({"error": "client_email is required"}, status_code=400)
            register_service_account(
                state,
                client_email=body["client_email"],
                public_key_pem=body["public_key_pem"],
                private_key_id=body.get("private_key_id"),
                project_id=body.get("project_id"),
                domain_wide_delegation=delegation,
            )
            return JSONResponse({"client_email": body["client_email"]}, status_code=201)
        created = create_service_account(
            state,
            client_email=body.get("client_email"),
            project_id=body.get("project_id") or "arkyra-sandbox",
            domain_wide_delegation=delegation,
        )
        return JSONResponse(created, status_code=201)

    return [
        Route("/token", token, methods=["POST"]),
        Route("/_sandbox/service-accounts", seed_service_account, methods=["POST"]),
    ]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Injected faults in the token endpoint's own shape ``{error, error_description}``."""
    if kind == "rate_limit" or status == 429:
        response = _oauth_error("rate_limit_exceeded", "Rate limit exceeded.", status=429)
        if retry_after is not None:
            response.headers["Retry-After"] = f"{retry_after:g}"
        return response
    if status >= 500:
        return _oauth_error("internal_failure", "Backend Error", status=status)
    return _oauth_error("invalid_request", "Bad Request", status=status)
