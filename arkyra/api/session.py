"""Browser sessions for the dashboard: sign in with a token, keep it in a strict cookie.

The user pastes a JWT minted by ``arkyra token``; once verified it is kept in an ``HttpOnly``,
``SameSite=Strict`` cookie (``Secure`` over HTTPS), so page scripts never see it. Every form
carries a CSRF token bound to the session (an HMAC of the session cookie under the JWT secret);
the sign-in form, which has no session yet, uses a double-submit cookie instead. A request whose
``Origin`` names another site is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import jwt
from fastapi import Request, Response

from arkyra.config import Settings
from arkyra.security.tokens import InvalidToken, Principal, verify_token

SESSION_COOKIE = "arkyra_session"
SIGN_IN_CSRF_COOKIE = "arkyra_signin_csrf"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 64 * 1024
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class SessionRequired(Exception):
    """No valid session cookie: the browser should go to the sign-in page."""


class CsrfRejected(Exception):
    """A form arrived without the right CSRF token, or from another origin."""


class FormRejected(Exception):
    """A form body that is not URL-encoded, or too large."""


@dataclass(frozen=True)
class Session:
    """The signed-in user, the CSRF token their forms must carry, and their bearer token
    (kept server-side, for the dashboard's own calls to the API)."""

    principal: Principal
    csrf_token: str
    token: str = field(repr=False)


def _csrf_key(settings: Settings) -> bytes:
    secret = settings.require("jwt_secret").encode()
    return hashlib.sha256(b"arkyra-dashboard-csrf\0" + secret).digest()


def csrf_token_for(settings: Settings, session_value: str) -> str:
    """The CSRF token of a session: stable for the session, useless for any other.

    Hex, like every random value the pages carry, so no token can look like a vendor key
    (``sk-...``, ``hg_...``) to a log or response scanner."""
    return hmac.new(_csrf_key(settings), session_value.encode(), hashlib.sha256).hexdigest()


def current_session(request: Request, settings: Settings) -> Session:
    """The session from the cookie; ``SessionRequired`` when absent, expired or forged."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise SessionRequired("not signed in")
    try:
        principal = verify_token(settings, token)
    except InvalidToken as exc:
        raise SessionRequired(str(exc)) from None
    return Session(principal=principal, csrf_token=csrf_token_for(settings, token), token=token)


def optional_session(request: Request, settings: Settings) -> Session | None:
    try:
        return current_session(request, settings)
    except SessionRequired:
        return None


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def start_session(response: Response, request: Request, settings: Settings, token: str) -> None:
    """Verify ``token`` (``InvalidToken`` if bad) and keep it in the session cookie."""
    verify_token(settings, token)
    max_age = _seconds_left(token)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
    )
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path="/")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def _seconds_left(token: str) -> int:
    """Cookie lifetime: until the token expires (it is verified separately)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return max(1, int(claims.get("exp", 0)) - int(time.time()))


# -- the sign-in form's double-submit token ---------------------------------------------------


def sign_in_csrf(request: Request) -> str:
    """The double-submit token for the sign-in form: the browser's, or a new one."""
    value = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
    return value if len(value) >= 32 else secrets.token_hex(32)


def set_sign_in_csrf(response: Response, request: Request, value: str) -> None:
    """Give the browser the sign-in token as a cookie (its copy to submit is in the form)."""
    response.set_cookie(
        SIGN_IN_CSRF_COOKIE,
        value,
        max_age=3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
    )


def check_sign_in_csrf(request: Request, form: dict[str, str]) -> None:
    check_origin(request)
    expected = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
    given = form.get(CSRF_FIELD, "")
    if len(expected) < 32 or not hmac.compare_digest(expected, given):
        raise CsrfRejected("the sign-in form expired; reload the page and try again")


def check_csrf(request: Request, session: Session, form: dict[str, str]) -> None:
    """Refuse a form without this session's token, or sent from another origin."""
    check_origin(request)
    given = form.get(CSRF_FIELD, "")
    if not given or not hmac.compare_digest(session.csrf_token, given):
        raise CsrfRejected("the form expired or did not come from this site; reload and retry")


def check_origin(request: Request) -> None:
    """A browser names the page's origin on POST; it must be this site."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise CsrfRejected("the form was sent from another site")


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form body as field -> last value (no multipart, bounded size)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        raise FormRejected(f"forms must be sent as {FORM_CONTENT_TYPE}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormRejected("the form is too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise FormRejected("the form could not be read") from None
    return {name: values[-1] for name, values in parsed.items()}
