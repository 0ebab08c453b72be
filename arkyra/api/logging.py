"""Structured JSON logs with request ids, and a filter that keeps secrets out of every line.

The redaction filter removes what looks like a secret wherever it appears in a record: the
values of ``Authorization`` / ``X-Api-Key`` headers, bearer tokens and JWTs, values with a known
key prefix (``sk-``, ``hg_``, ``whsec_``, ``phx_``, ...), and any credential value the API was
handed (registered with :func:`remember_secret` before it can reach a log line).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "[redacted]"

#: The request being served, for log lines and error bodies.
request_id_var: ContextVar[str | None] = ContextVar("arkyra_request_id", default=None)

#: Prefixes vendors give their keys; a token starting with one is treated as a secret.
KEY_PREFIXES: tuple[str, ...] = (
    "sk-",
    "sk_",
    "pk_",
    "rk_",
    "hg_",
    "whsec_",
    "phx_",
    "phc_",
    "xoxb-",
    "xoxp-",
    "ghp_",
    "gho_",
    "github_pat_",
    "AIza",
    "ntn_",
    "secret_",
)

_PREFIX_PATTERN = "|".join(re.escape(p) for p in KEY_PREFIXES)

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Header values: "Authorization: Bearer x", "'x-api-key': 'x'", "api_key=x" ...
    re.compile(
        r"(?i)((?:authorization|proxy-authorization|x-api-key|api[-_]?key|xi-api-key|"
        r"access[-_]?token|refresh[-_]?token|client[-_]?secret|password|secret)"
        r"[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+|token\s+)?[^\s\"',;}]+"
    ),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    # JWTs (three base64url segments, the first two JSON objects).
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    # Known vendor key prefixes followed by a key-like tail.
    re.compile(rf"(?<![A-Za-z0-9])(?:{_PREFIX_PATTERN})[A-Za-z0-9._-]{{6,}}"),
    # Airtable personal tokens: pat + 14 chars + '.' + 64 hex.
    re.compile(r"\bpat[A-Za-z0-9]{10,}\.[A-Fa-f0-9]{16,}\b"),
)

#: ``extra={TRUSTED: True}`` marks a line built only from values that cannot hold a secret
#: (method, route template, status, duration): it skips the redaction passes, which cost more
#: than the rest of the line and ran on every request's access line.
TRUSTED = "_arkyra_trusted"

#: Loggers that write one INFO line per request or per upstream call; our own access line
#: (route template, status, duration, request id) already says the same, so they only speak
#: from WARNING up.
PER_REQUEST_LOGGERS: tuple[str, ...] = ("uvicorn.access", "httpx", "httpcore")

_MIN_SECRET_LENGTH = 6
_MAX_REMEMBERED = 5000
_secrets: dict[str, None] = {}  # insertion-ordered, so the oldest are forgotten first
_secrets_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Redact ``value`` from every future log line (credential values the API was given)."""
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.pop(value, None)
        _secrets[value] = None
        while len(_secrets) > _MAX_REMEMBERED:
            del _secrets[next(iter(_secrets))]


def remember_secrets(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, str):
            remember_secret(value.strip())
            remember_secret(value)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret-looking value (and ``extra`` values) replaced."""
    if not text:
        return text
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in [*sorted(extra, key=len, reverse=True), *known]:
        if value and len(value) >= _MIN_SECRET_LENGTH and value in text:
            text = text.replace(value, REDACTED)
    for index, pattern in enumerate(_PATTERNS):
        if index == 0:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        elif index == 1:
            text = pattern.sub(lambda m: m.group(1) + " " + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


#: Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName"}
)


class RedactionFilter(logging.Filter):
    """Rewrites a record in place so no handler after it can see a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_arkyra_redacted", False):
            return True
        if getattr(record, TRUSTED, False):
            if getattr(record, "request_id", None) is None:
                record.request_id = request_id_var.get()
            record._arkyra_redacted = True
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The exception object itself may carry a secret in its args; handlers print exc_text.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                record.__dict__[key] = _redact_value(value)
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        record._arkyra_redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        text = json.dumps(payload, default=str, ensure_ascii=False)
        return text if getattr(record, TRUSTED, False) else redact(text)


_FILTER = RedactionFilter()


def get_logger(name: str) -> logging.Logger:
    """A logger whose own records are redacted before any handler sees them."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def configure_logging(level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """JSON lines on ``stream`` (stderr) for the root, uvicorn and arkyra loggers, redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_FILTER)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_arkyra_json", False):
            root.removeHandler(existing)
    handler._arkyra_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    quiet = root.getEffectiveLevel() >= logging.INFO  # DEBUG keeps every line
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
    for existing in root.handlers:
        if _FILTER not in existing.filters:
            existing.addFilter(_FILTER)
    return handler
