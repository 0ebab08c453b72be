"""JWTs for the HTTP API: minted for local use by ``arkyra token``, verified on every request.

The organization always comes from the token. Only the configured HMAC algorithm is accepted,
so ``alg: none`` and algorithm-confusion tokens are refused.
"""

from __future__ import annotations

import time
import uuid
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


def verify_token(settings: Settings, token: str) -> Principal:
    """Check signature, expiry, not-before, issuer and audience; return who is calling."""
    try:
        claims = jwt.decode(
            token,
            settings.require("jwt_secret"),
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
    return Principal(subject=str(claims["sub"]), organization_id=org, role=role)
