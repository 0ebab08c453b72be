"""Settings: the only place the environment is read.

Every variable has the prefix ``ARKYRA_``. In ``production`` a missing secret stops start-up with
a message naming the variable; in ``development`` (the default) missing secrets are generated
once into ``<home>/local-keys.json`` (mode 0600) so the demo needs no set-up.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arkyra.errors import ConfigError

#: Every provider identifier that has a base-URL override (design.md section 3).
PROVIDER_IDENTIFIERS: tuple[str, ...] = (
    "heygen", "synthesia", "d-id", "runway",
    "elevenlabs", "murf", "playht",
    "webhooks", "zapier", "make", "n8n",
    "notion", "airtable", "google-sheets", "ga4", "looker-studio", "posthog", "amplitude",
    "openai", "glm", "claude", "mistral",
    "google-oauth",
)  # fmt: skip

LOCAL_KEYS_FILE = "local-keys.json"


def _base_url_field(identifier: str) -> str:
    return identifier.replace("-", "_") + "_base_url"


class Settings(BaseSettings):
    """Runtime configuration. Build one with :func:`get_settings`; tests build their own."""

    model_config = SettingsConfigDict(
        env_prefix="ARKYRA_", env_file=None, extra="ignore", case_sensitive=False
    )

    env: Literal["development", "production"] = "development"
    home: Path = Field(default=Path(".arkyra"), description="Local state: SQLite file, keys.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file under `home`."
    )
    redis_url: str | None = None

    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated `key_id:base64url(32 bytes)`; first encrypts, all decrypt.",
    )
    fingerprint_key: SecretStr | None = Field(
        default=None, description="HMAC key for account fingerprints when a vendor has no id."
    )
    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_ttl_seconds: int = 3600

    sandbox: bool = Field(default=False, description="Point every provider at the sandbox.")
    sandbox_url: str = "http://127.0.0.1:8710"
    ssrf_allow_loopback: bool = Field(
        default=False,
        description="Let user-supplied URLs reach 127.0.0.0/8 and ::1 (the sandbox only).",
    )

    http_timeout_seconds: float = 30.0
    http_connect_timeout_seconds: float = 10.0
    http_max_attempts: int = Field(default=3, ge=1, le=10)
    retry_after_max_seconds: float = Field(default=60.0, ge=0)

    job_poll_initial_seconds: float = 2.0
    job_poll_max_seconds: float = 30.0
    job_deadline_seconds: float = 1800.0

    # Platform keys for the AI router (an organization's own connected key wins).
    openai_api_key: SecretStr | None = None
    glm_api_key: SecretStr | None = None
    claude_api_key: SecretStr | None = None
    mistral_api_key: SecretStr | None = None

    rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Per-organization, per-route limits by bucket, as JSON: "
            '{"default": "120/minute", "connect": "20/minute", "function": "60/minute", '
            '"submit": "30/minute", "ai": "3000/minute"}; unnamed buckets keep their defaults.'
        ),
    )

    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics requires `Authorization: Bearer <this token>`.",
    )

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Where people reach the API and dashboard; links in alerts start with it.",
    )

    alerts_operator_orgs: list[str] = Field(
        default_factory=list,
        description="Organizations told about platform-wide events (a provider's breaker opening).",
    )

    prefect_home: Path | None = Field(
        default=None, description="PREFECT_HOME for the CLI; default: `<home>/prefect`."
    )

    # Per-provider base URLs: ARKYRA_<IDENTIFIER>_BASE_URL (upper case, '-' -> '_').
    heygen_base_url: str | None = None
    synthesia_base_url: str | None = None
    d_id_base_url: str | None = None
    runway_base_url: str | None = None
    elevenlabs_base_url: str | None = None
    murf_base_url: str | None = None
    playht_base_url: str | None = None
    webhooks_base_url: str | None = None
    zapier_base_url: str | None = None
    make_base_url: str | None = None
    n8n_base_url: str | None = None
    notion_base_url: str | None = None
    airtable_base_url: str | None = None
    google_sheets_base_url: str | None = None
    ga4_base_url: str | None = None
    looker_studio_base_url: str | None = None
    posthog_base_url: str | None = None
    amplitude_base_url: str | None = None
    openai_base_url: str | None = None
    glm_base_url: str | None = None
    claude_base_url: str | None = None
    mistral_base_url: str | None = None
    google_oauth_base_url: str | None = None

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # -- derived values ---------------------------------------------------------------------

    def platform_key(self, identifier: str) -> str | None:
        """The platform's own key for an AI provider, if configured."""
        value = getattr(self, identifier.replace("-", "_") + "_api_key", None)
        return (
            value.get_secret_value()
            if isinstance(value, SecretStr) and value.get_secret_value()
            else None
        )

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'arkyra.db'}"

    @property
    def effective_prefect_home(self) -> Path:
        return self.prefect_home or self.home / "prefect"

    def base_url_for(self, identifier: str, default: str) -> str:
        """The base URL for a provider: explicit override, else the sandbox, else the vendor."""
        override = getattr(self, _base_url_field(identifier), None)
        if override:
            return override.rstrip("/")
        if self.sandbox:
            return f"{self.sandbox_url.rstrip('/')}/{identifier}"
        return default.rstrip("/")

    # -- secrets ----------------------------------------------------------------------------

    def require(self, name: str) -> str:
        """Return the secret ``name`` (a field name), generating a local one in development."""
        value = getattr(self, name)
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        variable = f"ARKYRA_{name.upper()}"
        if self.is_production:
            raise ConfigError(
                f"{variable} is not set. Production refuses to start without it; "
                f"see README.md, section 'Configuration'."
            )
        generated = self._local_keys()[name]
        setattr(self, name, SecretStr(generated))
        return generated

    @property
    def local_keys_path(self) -> Path:
        return self.home / LOCAL_KEYS_FILE

    def _local_keys(self) -> dict[str, str]:
        """Load, or create once, the development keys file (never used in production)."""
        path = self.local_keys_path
        data = json.loads(path.read_text()) if path.exists() else {}
        wanted = {
            "encryption_keys": lambda: "local1:" + generate_encryption_key(),
            "fingerprint_key": lambda: secrets.token_urlsafe(32),
            "jwt_secret": lambda: secrets.token_urlsafe(48),
        }
        missing = [k for k in wanted if k not in data]
        if missing:
            for key in missing:
                data[key] = wanted[key]()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=2)
        return data

    def validate_for_startup(self) -> None:
        """Fail fast, naming the variable, when a required secret is missing."""
        for name in ("encryption_keys", "jwt_secret", "fingerprint_key"):
            self.require(name)


def generate_encryption_key() -> str:
    """A new 256-bit key in the form ``ARKYRA_ENCRYPTION_KEYS`` expects (after ``id:``)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def reset_settings_cache() -> None:
    """Forget cached settings (tests and the CLI call this after changing the environment)."""
    get_settings.cache_clear()


def apply_prefect_environment(settings: Settings) -> None:
    """Keep the CLI's Prefect state (ephemeral server database) under ``<home>/prefect``,
    unless the user already points Prefect somewhere; never send Prefect telemetry."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if "PREFECT_API_URL" not in os.environ and "PREFECT_HOME" not in os.environ:
        home = settings.effective_prefect_home
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
