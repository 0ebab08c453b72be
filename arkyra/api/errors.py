"""Exception handlers: every failure becomes one JSON shape with a request id, never internals.

Body: ``{"error": <kind>, "message": <text>, "request_id": <id>}`` plus ``errors`` (field ->
reason) for invalid input. Messages are passed through the log redaction, so a credential that
slipped into one is not echoed back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from arkyra.api.logging import get_logger, redact, request_id_var
from arkyra.credentials import NeedsReconnect
from arkyra.errors import (
    ArkyraError,
    BadRequest,
    ConfigError,
    ContentRejected,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.ratelimit import Decision
from arkyra.security.tokens import InvalidToken

log = get_logger("arkyra.api.errors")

AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="arkyra"'}


class TooManyRequests(ArkyraError):
    """Our own per-organization limit refused the request (not a vendor 429)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__("rate limit exceeded for this organization and route; retry later")
        self.decision = decision


class ConnectRejected(ArkyraError):
    """The vendor refused the credentials while connecting; ``message`` is its reason."""

    def __init__(self, error: ProviderError, secrets: list[str]) -> None:
        self.error = error
        self.reason = redact(error.message or str(error), secrets)
        super().__init__(self.reason)


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": kind,
        "message": redact(message),
        "request_id": request_id_var.get(),
    }
    body.update(extra)
    return body


def json_error(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        error_body(kind, message, **extra), status_code=status, headers=dict(headers or {})
    )


def internal_error_response() -> JSONResponse:
    """What a caller sees of a bug: a request id to quote, nothing else."""
    return json_error(500, "internal", "internal error; quote the request id when reporting it")


def _clean_field_errors(errors: Mapping[str, str]) -> dict[str, str]:
    return {redact(str(k)): redact(str(v)) for k, v in errors.items()}


def _retry_after(seconds: float | None) -> dict[str, str]:
    if seconds is None or not math.isfinite(seconds):
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# -- handlers ---------------------------------------------------------------------------------


async def on_invalid_input(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    return json_error(422, "invalid_input", str(exc), errors=_clean_field_errors(exc.errors))


async def on_request_validation(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own validation: field -> reason, never the submitted values."""
    assert isinstance(exc, RequestValidationError)
    errors: dict[str, str] = {}
    for item in exc.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        errors[location or "body"] = str(item.get("msg", "invalid"))
    return json_error(
        422, "invalid_input", "the request is not valid", errors=_clean_field_errors(errors)
    )


async def on_not_found(_: Request, exc: Exception) -> JSONResponse:
    return json_error(404, "not_found", str(exc))


async def on_needs_reconnect(_: Request, exc: Exception) -> JSONResponse:
    return json_error(409, "needs_reconnect", str(exc))


async def on_invalid_token(_: Request, exc: Exception) -> JSONResponse:
    return json_error(401, "unauthorized", str(exc), headers=AUTHENTICATE)


async def on_too_many_requests(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TooManyRequests)
    return json_error(429, "rate_limited", str(exc), headers=exc.decision.headers())


async def on_connect_rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConnectRejected)
    return json_error(
        400,
        "connection_failed",
        exc.reason,
        provider=exc.error.provider,
        vendor_status=exc.error.status,
        vendor_code=None if exc.error.code is None else redact(str(exc.error.code)),
    )


def provider_status(exc: ProviderError) -> int:
    """The HTTP status for a vendor failure while *using* an integration."""
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, InvalidCredentials):
        return 409
    if isinstance(exc, QuotaExhausted):
        return 402
    if isinstance(exc, BadRequest | ContentRejected):
        return 400
    if isinstance(exc, Transient):
        return 503
    return 502


async def on_provider_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProviderError)
    status = provider_status(exc)
    headers = _retry_after(exc.retry_after) if isinstance(exc, RateLimited) else {}
    return json_error(
        status,
        "needs_reconnect" if status == 409 else "provider_error",
        exc.message or str(exc),
        headers=headers,
        provider_error=type(exc).__name__,
        provider=exc.provider,
        vendor_status=exc.status,
        vendor_code=None if exc.code is None else redact(str(exc.code)),
    )


async def on_config_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("configuration error while serving %s: %s", request.url.path, exc)
    return json_error(503, "unavailable", "the service is not configured for this request")


async def on_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
    }.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    return json_error(exc.status_code, kind, detail, headers=exc.headers)


async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    log_unhandled(request.method, request.url.path, exc)
    return internal_error_response()


def log_unhandled(method: str, path: str, exc: BaseException) -> None:
    log.error(
        "unhandled error on %s %s: %s",
        method,
        path,
        type(exc).__name__,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler above on ``app``."""
    app.add_exception_handler(InvalidInput, on_invalid_input)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(NotFound, on_not_found)
    app.add_exception_handler(NeedsReconnect, on_needs_reconnect)
    app.add_exception_handler(InvalidToken, on_invalid_token)
    app.add_exception_handler(TooManyRequests, on_too_many_requests)
    app.add_exception_handler(ConnectRejected, on_connect_rejected)
    app.add_exception_handler(ProviderError, on_provider_error)
    app.add_exception_handler(ConfigError, on_config_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(Exception, on_unhandled)
