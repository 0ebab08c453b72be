"""The error taxonomy: every vendor failure is mapped once, at the provider's edge, to one class.

Callers decide what to do from the class alone (design.md section 4):

- ``retry_same_provider``: worth another try on the same provider (after backoff).
- ``allows_fallback``: the next provider in a chain may succeed where this one failed.

Messages carry the provider, the HTTP status and the vendor's own words, never a credential.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ArkyraError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ArkyraError):
    """Settings are missing or invalid; the message names the variable to set."""


class InvalidInput(ArkyraError, ValueError):
    """Input from a user (CLI, API, flow parameters) is wrong; ``errors`` maps field -> reason."""

    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class UnsafeURL(InvalidInput):
    """A user-supplied URL points somewhere we refuse to send requests (SSRF guard)."""


class NotFound(ArkyraError, LookupError):
    """The object does not exist, or belongs to another organization."""


class DecryptionFailed(ArkyraError):
    """A stored ciphertext did not authenticate under any configured key."""


class ProviderError(ArkyraError):
    """A call to a third-party provider failed.

    ``message`` is the vendor's explanation (already stripped of anything secret),
    ``status`` the HTTP status when there was one, ``code`` the vendor's own error code.
    """

    retry_same_provider: ClassVar[bool] = False
    allows_fallback: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        code: str | int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.provider or "provider"
        bits = [f"{where}: {self.message}"]
        if self.status is not None:
            bits.append(f"HTTP {self.status}")
        if self.code not in (None, ""):
            bits.append(f"code {self.code}")
        return " (".join([bits[0], ", ".join(bits[1:]) + ")"]) if len(bits) > 1 else bits[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description for API responses and job records."""
        return {
            "error": type(self).__name__,
            "provider": self.provider,
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }


class Transient(ProviderError):
    """5xx, 529, timeouts, connection resets: retry with backoff, then fall back."""

    retry_same_provider = True
    allows_fallback = True


class RateLimited(ProviderError):
    """429 with room to wait: wait ``retry_after`` seconds (bounded), then fall back."""

    retry_same_provider = True
    allows_fallback = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class QuotaExhausted(ProviderError):
    """Out of credits or balance: fall back at once and cool the provider down."""

    allows_fallback = True


class InvalidCredentials(ProviderError):
    """401/403: fall back, and mark the integration as needing a reconnect."""

    allows_fallback = True


class ContextTooLong(ProviderError):
    """The prompt is larger than the model's window: fall back to a larger one."""

    allows_fallback = True


class ContentRejected(ProviderError):
    """The vendor refused the content on policy grounds: fail fast with its reason."""


class BadRequest(ProviderError):
    """Our request was wrong (validation, unknown ids): fail fast with a clear message."""


class JobFailed(ProviderError):
    """A vendor-side job (render, synthesis) ended in failure; ``message`` keeps its reason."""


class JobDeadlineExceeded(ProviderError):
    """A job did not finish before our deadline.

    Not a fallback case: the vendor may still finish (and bill) it, so starting the same
    work elsewhere could pay twice. The job id is in ``details`` for a later check.
    """


class SubmissionUncertain(ProviderError):
    """A paid request may or may not have reached the vendor, and the vendor cannot be asked.

    Left by a worker stopped mid-submission. Not a fallback case and not repeated: sending
    again, here or elsewhere, could pay twice; the message says how to render it anyway.
    """


TAXONOMY: tuple[type[ProviderError], ...] = (
    Transient,
    RateLimited,
    QuotaExhausted,
    InvalidCredentials,
    ContextTooLong,
    ContentRejected,
    BadRequest,
)
