"""Google service-account auth and the Google API edge shared by Sheets, GA4 and Looker Studio.

The flow (reference section 0): sign a short-lived RS256 JWT with the service account's private
key, exchange it at the token endpoint (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``)
for an access token, then send ``Authorization: Bearer <token>``. Tokens are cached per
(token endpoint, service account key, scopes, delegated user) until shortly before they expire,
and an asyncio lock per key makes concurrent callers mint once.

The assertion is only ever sent to the operator-configured endpoint
(``settings.base_url_for("google-oauth", ...)``), never to the ``token_uri`` inside the pasted
JSON: a signed assertion is a usable credential for an hour, so a user-supplied URL must not
receive it. The private key never appears in a log line, an exception message or a ``repr``.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, NoReturn

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.http.retry import call_with_retries, parse_retry_after
from arkyra.providers.base import AccountInfo, ThirdPartyProvider

OAUTH_IDENTIFIER = "google-oauth"
DEFAULT_OAUTH_BASE_URL = "https://oauth2.googleapis.com"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 3600  # Google's maximum
REFRESH_MARGIN_SECONDS = 300.0  # a 1 h token is reused for about 55 minutes

SHEETS_READONLY = "https://www.googleapis.com/auth/spreadsheets.readonly"
ANALYTICS_READONLY = "https://www.googleapis.com/auth/analytics.readonly"
DATASTUDIO_READONLY = "https://www.googleapis.com/auth/datastudio.readonly"
DRIVE_METADATA_READONLY = "https://www.googleapis.com/auth/drive.metadata.readonly"

SERVICE_ACCOUNT_FIELD = "service_account_json"
_REQUIRED_KEYS = ("client_email", "private_key")

# Token-endpoint errors that mean the key, the account or its delegation is not usable.
_CREDENTIAL_GRANT_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "access_denied"}
)
# Google error ``status`` values (google.rpc.Code names) and the class each one means.
_STATUS_CLASSES: dict[str, type[ProviderError]] = {
    "UNAUTHENTICATED": InvalidCredentials,
    "PERMISSION_DENIED": InvalidCredentials,
    "INVALID_ARGUMENT": BadRequest,
    "NOT_FOUND": BadRequest,
    "FAILED_PRECONDITION": BadRequest,
    "OUT_OF_RANGE": BadRequest,
    "ALREADY_EXISTS": BadRequest,
    "UNAVAILABLE": Transient,
    "INTERNAL": Transient,
    "DEADLINE_EXCEEDED": Transient,
    "UNKNOWN": Transient,
    "ABORTED": Transient,
}
# ErrorInfo reasons that are rate limits whatever the HTTP status (older APIs used 403).
_RATE_LIMIT_REASONS = frozenset(
    {"RATE_LIMIT_EXCEEDED", "rateLimitExceeded", "userRateLimitExceeded"}
)
# 403 reasons that are not about sharing, so the sharing hint would mislead.
_NOT_SHARING_REASONS = frozenset(
    {"SERVICE_DISABLED", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "API_KEY_SERVICE_BLOCKED"}
)
_DAILY_MARKERS = ("per day", "perday", "daily")

# The service-account email of the call in progress, for the sharing hint in error messages.
_current_client_email: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "google_client_email", default=None
)


# -- the service account -----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccount:
    """The parts of a service-account key JSON that the flow uses (the key is never shown)."""

    client_email: str
    private_key_pem: str = field(repr=False)
    private_key_id: str | None = None
    project_id: str | None = None

    @classmethod
    def from_json(cls, raw: str | Mapping[str, Any] | None) -> ServiceAccount:
        """Parse the pasted key JSON; ``InvalidInput`` names what is missing or wrong."""
        data = _load_json_object(raw)
        kind = data.get("type")
        if kind is not None and kind != "service_account":
            _invalid(f"is a {kind!r} key; create a key for a service account instead")
        missing = [k for k in _REQUIRED_KEYS if not _text(data.get(k))]
        if missing:
            _invalid(f"is missing the key(s): {', '.join(missing)}")
        email = _text(data["client_email"])
        if "@" not in email:
            _invalid("has a client_email that is not an email address")
        pem = _text(data["private_key"])
        if "PRIVATE KEY-----" not in pem:
            _invalid("has a private_key that is not a PEM private key")
        return cls(
            client_email=email,
            private_key_pem=pem,
            private_key_id=_text(data.get("private_key_id")) or None,
            project_id=_text(data.get("project_id")) or None,
        )

    @cached_property
    def signing_key(self) -> RSAPrivateKey:
        """The RSA key, loaded once; a bad key is ``InvalidInput`` without its content."""
        try:
            key = load_pem_private_key(self.private_key_pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None
        if not isinstance(key, RSAPrivateKey):
            _invalid("has a private_key that cannot be loaded as an RSA private key")
        return key

    @cached_property
    def key_digest(self) -> str:
        """A one-way digest of the key, so a rotated key never reuses an old token."""
        return hashlib.sha256(self.private_key_pem.encode()).hexdigest()

    @property
    def display_name(self) -> str:
        return self.project_id or self.client_email


def _load_json_object(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str) or not raw.strip():
        _invalid("is required")
    try:
        data = json.loads(raw)
    except ValueError:
        _invalid("is not valid JSON")
    if not isinstance(data, dict):
        _invalid("must be a JSON object")
    return data


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _invalid(reason: str) -> NoReturn:
    raise InvalidInput(
        f"the service account JSON {reason}", {SERVICE_ACCOUNT_FIELD: f"the JSON {reason}"}
    )


def build_assertion(
    account: ServiceAccount,
    scopes: tuple[str, ...],
    audience: str,
    *,
    now: float,
    subject: str | None = None,
    lifetime: int = ASSERTION_LIFETIME_SECONDS,
) -> str:
    """The signed RS256 JWT for the jwt-bearer grant (``sub`` only for domain-wide delegation)."""
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": account.client_email,
        "scope": " ".join(scopes),
        "aud": audience,
        "iat": issued,
        "exp": issued + min(lifetime, ASSERTION_LIFETIME_SECONDS),
    }
    if subject:
        claims["sub"] = subject
    headers = {"kid": account.private_key_id} if account.private_key_id else None
    return jwt.encode(claims, account.signing_key, algorithm="RS256", headers=headers)


# -- the token cache ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and the clock time at which it stops being valid."""

    value: str = field(repr=False)
    expires_at: float


TokenKey = tuple[str, str, str, tuple[str, ...], str]


class TokenCache:
    """Access tokens by key, reused until ``refresh_margin`` seconds before they expire.

    One lock per key (and per event loop, since asyncio locks belong to a loop) makes
    concurrent callers wait for a single mint instead of each minting their own.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self.clock = clock
        self.refresh_margin = refresh_margin
        self._tokens: dict[TokenKey, AccessToken] = {}
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[TokenKey, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    def _lock(self, key: TokenKey) -> asyncio.Lock:
        per_loop = self._locks.setdefault(asyncio.get_running_loop(), {})
        return per_loop.setdefault(key, asyncio.Lock())

    def _fresh(self, key: TokenKey) -> AccessToken | None:
        token = self._tokens.get(key)
        if token is not None and self.clock() < token.expires_at - self.refresh_margin:
            return token
        return None

    async def get(self, key: TokenKey, mint: Callable[[], Awaitable[AccessToken]]) -> AccessToken:
        """The cached token for ``key``, or a newly minted one (minted once under the lock)."""
        token = self._fresh(key)
        if token is not None:
            return token
        async with self._lock(key):
            token = self._fresh(key)
            if token is None:
                token = await mint()
                self._tokens[key] = token
            return token

    def invalidate(self, key: TokenKey, value: str | None = None) -> None:
        """Forget ``key``'s token (only if it is still ``value``, when given)."""
        current = self._tokens.get(key)
        if current is not None and (value is None or current.value == value):
            del self._tokens[key]

    def clear(self) -> None:
        self._tokens.clear()


TOKEN_CACHE = TokenCache()
"""The process-wide cache every Google provider shares (tests may substitute their own)."""


# -- the token endpoint ------------------------------------------------------------------------


def token_endpoint_error(response: httpx.Response, provider: str) -> ProviderError:
    """Map a token-endpoint failure ``{error, error_description}``; never echoes the assertion."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # some Google front ends answer with the RPC envelope
        code = str(error.get("status") or "")
        message = str(error.get("message") or "token request failed")
    else:
        code = str(error or "")
        message = str(body.get("error_description") or error or "token request failed")
    message = message[:300]
    kw: dict[str, Any] = {"provider": provider, "status": status, "code": code or None}
    if status == 429 or code == "RESOURCE_EXHAUSTED":
        retry = parse_retry_after(response.headers)
        return RateLimited(f"token endpoint: {message}", retry_after=retry, **kw)
    if status >= 500 or status == 408:
        return Transient(f"token endpoint: {message}", **kw)
    if code in _CREDENTIAL_GRANT_ERRORS or status in (401, 403):
        return InvalidCredentials(f"the service account key was refused: {message}", **kw)
    return BadRequest(f"token endpoint: {message}", **kw)


# -- the shared provider edge ------------------------------------------------------------------


class GoogleServiceAccountProvider(ThirdPartyProvider):
    """Base of the Google providers: token minting, authorised requests, error mapping.

    Not registered itself; subclasses set ``scopes`` and may override :meth:`sharing_hint`.
    """

    scopes: ClassVar[tuple[str, ...]] = ()
    token_cache: ClassVar[TokenCache] = TOKEN_CACHE

    # -- auth ----------------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        base = self.settings.base_url_for(OAUTH_IDENTIFIER, DEFAULT_OAUTH_BASE_URL)
        return f"{base}/token"

    def service_account(self, credentials: Mapping[str, str]) -> ServiceAccount:
        return ServiceAccount.from_json(credentials.get(SERVICE_ACCOUNT_FIELD))

    def token_key(
        self, account: ServiceAccount, scopes: tuple[str, ...], subject: str | None
    ) -> TokenKey:
        scope_key = tuple(sorted(set(scopes)))
        return (self.token_url, account.client_email, account.key_digest, scope_key, subject or "")

    async def access_token(
        self,
        account: ServiceAccount,
        scopes: tuple[str, ...] | None = None,
        subject: str | None = None,
    ) -> str:
        """A valid bearer token for ``scopes`` (this provider's by default), cached."""
        scopes = scopes or self.scopes
        key = self.token_key(account, scopes, subject)
        token = await self.token_cache.get(key, lambda: self._mint(account, scopes, subject))
        return token.value

    async def _mint(
        self, account: ServiceAccount, scopes: tuple[str, ...], subject: str | None
    ) -> AccessToken:
        url = self.token_url

        async def exchange() -> AccessToken:
            now = self.token_cache.clock()
            assertion = build_assertion(account, scopes, url, now=now, subject=subject)
            form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
            try:
                response = await self.client.post(url, data=form)
            except httpx.TransportError as exc:
                raise Transient(
                    f"token endpoint unreachable ({type(exc).__name__})", provider=self.identifier
                ) from None
            if response.status_code >= 400:
                raise token_endpoint_error(response, self.identifier)
            return self._parse_token(response, issued_at=now)

        return await call_with_retries(
            exchange,
            attempts=self.settings.http_max_attempts,
            max_wait=self.settings.retry_after_max_seconds,
        )

    def _parse_token(self, response: httpx.Response, *, issued_at: float) -> AccessToken:
        try:
            body = response.json()
            value = str(body["access_token"])
            lifetime = float(body.get("expires_in", ASSERTION_LIFETIME_SECONDS))
        except (ValueError, KeyError, TypeError):
            raise Transient(
                "token endpoint answered without an access_token",
                provider=self.identifier,
                status=response.status_code,
            ) from None
        return AccessToken(value=value, expires_at=issued_at + lifetime)

    # -- authorised requests -------------------------------------------------------------------

    async def google_json(
        self,
        method: str,
        path: str,
        credentials: Mapping[str, str],
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        scopes: tuple[str, ...] | None = None,
        subject: str | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send an authorised request and return its JSON body.

        A 401 with a cached token (revoked or expired early) is retried once with a new token.
        """
        account = self.service_account(credentials)
        scopes = scopes or self.scopes
        key = self.token_key(account, scopes, subject)
        marker = _current_client_email.set(account.client_email)
        try:
            for attempt in (1, 2):
                token = await self.access_token(account, scopes, subject)
                try:
                    response = await self.request(
                        method,
                        path,
                        credentials,
                        params=params,
                        json_body=json_body,
                        headers={"Authorization": f"Bearer {token}"},
                        idempotent=idempotent,
                    )
                except InvalidCredentials as exc:
                    if exc.status != 401 or attempt == 2:
                        raise
                    self.token_cache.invalidate(key, token)
                    continue
                return _json_body(response, self.identifier)
        finally:
            _current_client_email.reset(marker)
        raise AssertionError("unreachable")  # pragma: no cover

    def identity(self, account: ServiceAccount, credentials: Mapping[str, str]) -> AccountInfo:
        """Reference section 0: id = client_email, name = project_id (or the user's label)."""
        return AccountInfo(
            id=account.client_email, name=credentials.get("label") or account.display_name
        )

    # -- errors --------------------------------------------------------------------------------

    def sharing_hint(self, client_email: str, status_name: str) -> str | None:
        """What to tell the user when access is denied (``None``: no hint for this status)."""
        return None

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Map Google's ``{error:{code,message,status,details}}`` envelope to the taxonomy."""
        envelope = _google_error(response)
        if envelope is None:
            text = response.text.strip()[:300] or response.reason_phrase or "error"
            return self.error_from_status(response, message=text)
        status_name = str(envelope.get("status") or "")
        message = str(envelope.get("message") or status_name or "error")[:500]
        reasons, texts = _details(envelope)
        kw: dict[str, Any] = {
            "provider": self.identifier,
            "status": response.status_code,
            "code": status_name or None,
            "details": {"reasons": sorted(reasons)} if reasons else None,
        }
        if status_name == "RESOURCE_EXHAUSTED" or reasons & _RATE_LIMIT_REASONS:
            if _is_daily_quota(message, texts):
                return QuotaExhausted(message, **kw)
            return RateLimited(message, retry_after=self.retry_after(response), **kw)
        email = _current_client_email.get()
        if email and not reasons & _NOT_SHARING_REASONS:
            hint = self.sharing_hint(email, status_name)
            if hint:
                message = f"{message} ({hint})"
        error_class = _STATUS_CLASSES.get(status_name)
        if error_class is None:
            return self.error_from_status(response, message=message, code=status_name or None)
        return error_class(message, **kw)


def _google_error(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, list) and body:  # some endpoints wrap the envelope in a list
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _details(envelope: Mapping[str, Any]) -> tuple[set[str], list[str]]:
    """ErrorInfo reasons, and every descriptive string (quota limits, violations)."""
    reasons: set[str] = set()
    texts: list[str] = []
    for detail in envelope.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("reason"), str):
            reasons.add(detail["reason"])
        metadata = detail.get("metadata")
        if isinstance(metadata, dict):
            texts.extend(str(v) for v in metadata.values())
        for violation in detail.get("violations") or []:
            if isinstance(violation, dict):
                texts.extend(str(v) for v in violation.values())
    for item in envelope.get("errors") or []:  # the legacy v1 shape
        if isinstance(item, dict) and isinstance(item.get("reason"), str):
            reasons.add(item["reason"])
    return reasons, texts


def _is_daily_quota(message: str, texts: list[str]) -> bool:
    """A daily quota cannot be waited out within a run, so it is ``QuotaExhausted``."""
    haystack = " ".join([message, *texts]).lower()
    return any(marker in haystack for marker in _DAILY_MARKERS)


def _json_body(response: httpx.Response, provider: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise Transient(
            "answered with a body that is not JSON", provider=provider, status=response.status_code
        ) from None
