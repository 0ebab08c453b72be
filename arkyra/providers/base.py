"""The provider framework: registry, credential fields, exposed functions and the HTTP edge.

A provider is a class registered with :func:`third_party`. It owns its base URL, auth headers and
error mapping; it never reads the environment (settings are passed in) and never imports Prefect.

Only methods marked :func:`expose` are reachable from outside, each with a pydantic input model;
nothing is dispatched by ``getattr`` on a name that came from a request.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_type_hints

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from arkyra.config import Settings, get_settings
from arkyra.errors import (
    BadRequest,
    ContentRejected,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.http.client import get_client
from arkyra.http.retry import call_with_retries, parse_retry_after

Category = Literal["video", "audio", "automation", "content", "ai"]
FieldKind = Literal["secret", "text", "json", "select", "url"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class AccountInfo:
    """Who the credentials belong to: ``id`` is stable per account, ``name`` is for people."""

    id: str
    name: str


@dataclass(frozen=True)
class CredentialField:
    """One field a provider needs to connect; ``kind`` drives validation, storage and the form."""

    name: str
    label: str
    kind: FieldKind = "secret"
    required: bool = True
    options: tuple[str, ...] = ()
    help: str = ""
    default: str | None = None

    @property
    def is_secret(self) -> bool:
        return self.kind in ("secret", "json", "url")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "required": self.required,
            "options": list(self.options),
            "help": self.help,
            "secret": self.is_secret,
            "default": self.default,
        }


def api_key_field(label: str = "API key", help: str = "") -> CredentialField:
    """The most common field: a secret ``api_key``."""
    return CredentialField("api_key", label, "secret", help=help)


class ExposedInput(BaseModel):
    """Base of every exposed function's input model: unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class NoInput(ExposedInput):
    """For exposed functions that take no parameters."""


@dataclass(frozen=True)
class ExposedFunction:
    """A provider method callable from outside, with the model its input must satisfy."""

    name: str
    method_name: str
    input_model: type[BaseModel]
    description: str


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def expose(func: F) -> F:
    """Mark ``async def f(self, credentials, params: Model)`` as reachable from outside.

    The input model is taken from the type hint of ``params`` (``NoInput`` when absent).
    """
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"@expose needs an async function, got {func.__qualname__}")
    func.__arkyra_exposed__ = True  # type: ignore[attr-defined]
    return func


def _input_model_of(func: Callable[..., Any]) -> type[BaseModel]:
    hints = get_type_hints(func)
    model = hints.get("params", NoInput)
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise TypeError(f"{func.__qualname__}: 'params' must be a pydantic model")
    return model


class ThirdPartyProvider(ABC):
    """Base of every provider. Subclasses are registered with :func:`third_party`."""

    identifier: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    category: ClassVar[Category]
    fields: ClassVar[tuple[CredentialField, ...]]
    default_base_url: ClassVar[str] = ""
    deprecated: ClassVar[bool] = False
    exposed: ClassVar[dict[str, ExposedFunction]] = {}

    def __init__(
        self, *, settings: Settings | None = None, client: httpx.AsyncClient | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self._client = client
        self.base_url = self.settings.base_url_for(self.identifier, self.default_base_url)

    # -- the contract ------------------------------------------------------------------------

    @abstractmethod
    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """A live, cheap call that proves the credentials and identifies the account."""

    @abstractmethod
    async def send_data(self, credentials: Mapping[str, str], data: Any) -> Any:
        """The provider's main action (render, synthesize, deliver, fetch)."""

    # -- credentials -------------------------------------------------------------------------

    @classmethod
    def validate_credentials(cls, credentials: Mapping[str, Any]) -> dict[str, str]:
        """Check the declared fields; return a clean dict or raise ``InvalidInput`` per field."""
        errors: dict[str, str] = {}
        clean: dict[str, str] = {}
        declared = {f.name: f for f in cls.fields}
        for name in credentials:
            if name not in declared and name != "label":
                errors[name] = f"unknown field for {cls.identifier}"
        for spec in cls.fields:
            raw = credentials.get(spec.name, spec.default)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if spec.required:
                    errors[spec.name] = f"{spec.label} is required"
                continue
            if not isinstance(raw, str):
                errors[spec.name] = f"{spec.label} must be text"
                continue
            value = raw.strip()
            if spec.kind == "select" and spec.options and value not in spec.options:
                errors[spec.name] = f"{spec.label} must be one of: {', '.join(spec.options)}"
                continue
            if spec.kind == "json":
                try:
                    json.loads(value)
                except ValueError:
                    errors[spec.name] = f"{spec.label} must be valid JSON"
                    continue
            if spec.kind == "url" and not value.lower().startswith(("https://", "http://")):
                errors[spec.name] = f"{spec.label} must be an http(s) URL"
                continue
            clean[spec.name] = value
        label = credentials.get("label")
        if isinstance(label, str) and label.strip():
            clean["label"] = label.strip()[:200]
        if errors:
            raise InvalidInput(f"invalid credentials for {cls.identifier}", errors)
        return clean

    def api_key(self, credentials: Mapping[str, str]) -> str:
        """The ``api_key`` credential; ``InvalidCredentials`` when it is missing."""
        return require_credential(credentials, "api_key", self.identifier)

    def fingerprint(self, secret: str) -> str:
        """A keyed, non-reversible account id for vendors that return no identity."""
        key = self.settings.require("fingerprint_key").encode()
        digest = hmac.new(key, f"{self.identifier}\0{secret}".encode(), hashlib.sha256)
        return "fp_" + digest.hexdigest()[:32]

    # -- exposed functions -------------------------------------------------------------------

    @classmethod
    def exposed_function(cls, name: str) -> ExposedFunction:
        try:
            return cls.exposed[name]
        except KeyError:
            raise NotFound(f"{cls.identifier} has no function named {name!r}") from None

    async def call(self, name: str, credentials: Mapping[str, str], payload: Any) -> Any:
        """Validate ``payload`` against the exposed function's model, then call it."""
        spec = self.exposed_function(name)
        params = validate_model(spec.input_model, payload, f"{self.identifier}.{name}")
        method = getattr(self, spec.method_name)
        return await method(credentials, params)

    # -- HTTP at the edge --------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client or get_client()

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        """Headers that authenticate a request; providers override."""
        return {}

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Map an error response to the taxonomy; providers override for body codes."""
        return self.error_from_status(response, message=_body_message(response))

    def error_from_status(
        self, response: httpx.Response, *, message: str, code: str | int | None = None
    ) -> ProviderError:
        """The status-only mapping every provider starts from."""
        status = response.status_code
        kw: dict[str, Any] = {"provider": self.identifier, "status": status, "code": code}
        if status == 429:
            return RateLimited(message, retry_after=self.retry_after(response), **kw)
        if status in (401, 403):
            return InvalidCredentials(message, **kw)
        if status == 402:
            return QuotaExhausted(message, **kw)
        if status == 451:
            return ContentRejected(message, **kw)
        if status >= 500 or status in (408, 409):
            return Transient(message, **kw)
        return BadRequest(message, **kw)

    def retry_after(self, response: httpx.Response) -> float | None:
        return parse_retry_after(response.headers, max_wait=None)

    def is_error(self, response: httpx.Response) -> bool:
        """Whether a response is a failure; vendors that answer 200 with an error override."""
        return response.status_code >= 400

    async def request(
        self,
        method: str,
        path: str,
        credentials: Mapping[str, str],
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        """Send one logical request with same-provider retries; return a successful response.

        A non-idempotent request (POST without an idempotency key) is retried only when the
        vendor certainly did not act on it (connection refused, 429), so a retry never pays twice.
        """
        method = method.upper()
        idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        auth = self.auth_headers(credentials)
        merged = {**auth, **(headers or {})}
        secrets = [*credentials.values(), *auth.values()]

        async def attempt() -> httpx.Response:
            try:
                response = await self.client.request(
                    method, url, params=params, json=json_body, headers=merged
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise Transient(
                    f"could not connect ({type(exc).__name__})",
                    provider=self.identifier,
                    details={"request_sent": False},
                ) from None
            except httpx.UnsupportedProtocol:
                raise BadRequest(
                    "the configured base URL is not an http(s) URL; check "
                    f"ARKYRA_{self.identifier.upper().replace('-', '_')}_BASE_URL",
                    provider=self.identifier,
                ) from None
            except httpx.TransportError as exc:
                raise Transient(
                    f"connection failed ({type(exc).__name__})",
                    provider=self.identifier,
                    details={"request_sent": True},
                ) from None
            if self.is_error(response):
                await response.aread()
                raise redact(self.error_from_response(response), secrets)
            return response

        def safe_to_repeat(exc: BaseException) -> bool:
            if idempotent or isinstance(exc, RateLimited):
                return True
            return isinstance(exc, ProviderError) and exc.details.get("request_sent") is False

        return await call_with_retries(
            attempt,
            attempts=attempts or self.settings.http_max_attempts,
            max_wait=self.settings.retry_after_max_seconds,
            retry_if=safe_to_repeat,
        )

    async def get_json(self, path: str, credentials: Mapping[str, str], **kwargs: Any) -> Any:
        response = await self.request("GET", path, credentials, **kwargs)
        return _json(response, self.identifier)

    async def post_json(
        self, path: str, credentials: Mapping[str, str], body: Any, **kwargs: Any
    ) -> Any:
        response = await self.request("POST", path, credentials, json_body=body, **kwargs)
        return _json(response, self.identifier)


def require_credential(credentials: Mapping[str, str], name: str, provider: str) -> str:
    """The credential ``name``; a missing one raises ``InvalidCredentials`` naming the field."""
    value = credentials.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidCredentials(f"the credential field {name!r} is missing", provider=provider)
    return value.strip()


def redact(error: ProviderError, secrets: Any) -> ProviderError:
    """Remove any credential value a vendor echoed back from the error's message."""
    message = error.message
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= 6:
            message = message.replace(secret, "[redacted]")
            if " " in secret:  # "Bearer sk-...", "Basic ..."
                message = message.replace(secret.split(" ", 1)[1], "[redacted]")
    if message != error.message:
        error.message = message
        error.args = (error._render(),)
    return error


def validate_model(model: type[BaseModel], data: Any, where: str) -> Any:
    """``model.model_validate(data)`` with errors as ``InvalidInput`` keyed by field path."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput(f"invalid input for {where}", errors) from None


def _json(response: httpx.Response, provider: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise Transient(
            "answered with a body that is not JSON", provider=provider, status=response.status_code
        ) from None


def _body_message(response: httpx.Response) -> str:
    """The vendor's message from common error shapes, else a short slice of the body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] or response.reason_phrase or "error"
    for path in (("error", "message"), ("detail", "message"), ("message",), ("error",),
                 ("description",), ("detail",)):  # fmt: skip
        node: Any = body
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node[:500]
    return json.dumps(body)[:300]


# -- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type[ThirdPartyProvider]] = {}
_loaded = False


def third_party(
    *,
    identifier: str,
    title: str,
    description: str,
    category: Category,
    fields: list[CredentialField] | tuple[CredentialField, ...],
) -> Callable[[type[ThirdPartyProvider]], type[ThirdPartyProvider]]:
    """Register a provider class under ``identifier`` with its catalogue entry and fields."""

    def register(cls: type[ThirdPartyProvider]) -> type[ThirdPartyProvider]:
        if not issubclass(cls, ThirdPartyProvider):
            raise TypeError(f"{cls.__name__} must subclass ThirdPartyProvider")
        if identifier in _REGISTRY and _REGISTRY[identifier] is not cls:
            raise ValueError(f"provider {identifier!r} is registered twice")
        cls.identifier = identifier
        cls.title = title
        cls.description = description
        cls.category = category
        cls.fields = tuple(fields)
        exposed: dict[str, ExposedFunction] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if getattr(value, "__arkyra_exposed__", False):
                    exposed[attr] = ExposedFunction(
                        name=attr,
                        method_name=attr,
                        input_model=_input_model_of(value),
                        description=inspect.getdoc(value) or "",
                    )
        cls.exposed = exposed
        _REGISTRY[identifier] = cls
        return cls

    return register


def _load_builtin_providers() -> None:
    """Import every module under ``arkyra.providers.<category>`` so they register themselves."""
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil

    for category in ("video", "audio", "automation", "content", "ai"):
        package = importlib.import_module(f"arkyra.providers.{category}")
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


def provider_class(identifier: str) -> type[ThirdPartyProvider]:
    """The registered class for ``identifier``; ``NotFound`` names the known ones."""
    _load_builtin_providers()
    try:
        return _REGISTRY[identifier]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise NotFound(f"unknown provider {identifier!r}; known providers: {known}") from None


def get_provider(
    identifier: str, *, settings: Settings | None = None, client: httpx.AsyncClient | None = None
) -> ThirdPartyProvider:
    """A ready instance of the provider registered as ``identifier``."""
    return provider_class(identifier)(settings=settings, client=client)


def all_providers() -> list[type[ThirdPartyProvider]]:
    """Every registered provider class, by category then identifier."""
    _load_builtin_providers()
    return sorted(_REGISTRY.values(), key=lambda c: (c.category, c.identifier))


def catalogue_entry(cls: type[ThirdPartyProvider]) -> dict[str, Any]:
    """What the catalogue shows for a provider: never anything secret."""
    return {
        "identifier": cls.identifier,
        "title": cls.title,
        "description": cls.description,
        "category": cls.category,
        "deprecated": cls.deprecated,
        "fields": [f.to_dict() for f in cls.fields],
        "functions": sorted(cls.exposed),
    }
