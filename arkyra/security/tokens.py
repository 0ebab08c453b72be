"""JWTs for the HTTP API: minted for local use by ``arkyra token``, verified on every request.

The organization always comes from the token. Only the configured HMAC algorithm is accepted,
so ``alg: none`` and algorithm-confusion tokens are refused.

Verifying costs ~0.4 ms (decode, HMAC, claim checks), paid on every request, and clients send the
same token again and again; so a verified token is remembered in a small bounded LRU until its
``exp`` (keyed by the token *and* the key, algorithm, issuer and audience that accepted it, so a
rotated key or changed settings never reuse an old verdict). Refused tokens are never cached.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import jwt

from arkyra.config import Settings
from arkyra.errors import ArkyraError, InvalidInput

Role = Literal["admin", "member"]
ROLES: tuple[str, ...] = ("admin", "member")


class InvalidToken(ArkyraError):
    """The bearer token is missing, malformed, expired or signed with another key."""


@dataclass(frozen=True)
class Principal:
    subject: str
    organization_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def mint_token(
    settings: Settings,
    *,
    organization_id: str,
    role: str,
    subject: str = "local-user",
    ttl_seconds: int | None = None,
) -> str:
    """A signed token with ``sub``, ``org_id``, ``role``, ``iat``, ``nbf``, ``exp`` and ``jti``."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", {"role": role})
    if not organization_id:
        raise InvalidInput("organization id is required", {"org_id": "missing"})
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "org_id": organization_id,
        "role": role,
        "iat": now,
        "nbf": now,
        "exp": now + (ttl_seconds or settings.jwt_ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.require("jwt_secret"), algorithm=settings.jwt_algorithm)


#: How many verified tokens are remembered (least recently used forgotten first).
VERIFIED_CACHE_SIZE = 1024

_CacheKey = tuple[str, str, str, str | None, str | None]


class VerifiedTokens:
    """A bounded LRU of verified tokens: key -> (principal, expiry as a Unix time)."""

    def __init__(self, max_size: int = VERIFIED_CACHE_SIZE) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[_CacheKey, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _CacheKey, now: float) -> Principal | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry[1]:  # expired: verify again (and refuse) the slow way
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: _CacheKey, principal: Principal, expires_at: float) -> None:
        with self._lock:
            self._entries[key] = (principal, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


verified_tokens = VerifiedTokens()


def verify_token(settings: Settings, token: str) -> Principal:
    """Check signature, expiry, not-before, issuer and audience; return who is calling.

    A token already verified under the same settings is answered from :data:`verified_tokens`
    until its ``exp``."""
    secret = settings.require("jwt_secret")
    key: _CacheKey = (
        token,
        secret,
        settings.jwt_algorithm,
        settings.jwt_issuer,
        settings.jwt_audience,
    )
    now = time.time()
    cached = verified_tokens.get(key, now)
    if cached is not None:
        return cached
    principal, expires_at = _verify(settings, secret, token)
    verified_tokens.put(key, principal, expires_at)
    return principal


def _verify(settings: Settings, secret: str, token: str) -> tuple[Principal, float]:
    """The full check; the principal and the token's ``exp``."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[settings.jwt_algorithm],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": ["exp", "sub", "org_id", "role"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired; mint a new one") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the token is not valid: {exc}") from None
    role = claims.get("role")
    org = claims.get("org_id")
    if role not in ROLES or not isinstance(org, str) or not org:
        raise InvalidToken("the token lacks a valid org_id or role")
    principal = Principal(subject=str(claims["sub"]), organization_id=org, role=role)
    return principal, float(claims["exp"])
