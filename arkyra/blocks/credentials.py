"""Prefect block types that hold integration credentials.

One block document per integration (named ``tp-<integration id>``), mirrored encrypted in the
``third_party`` table. Secrets are ``SecretStr`` fields, so Prefect masks them in logs and the UI;
:meth:`ArkyraCredentials.credentials` is the one place they are unwrapped for a provider call.
"""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

DOCS = "https://github.com/arkyra/pipelines#how-credentials-are-kept"


class ArkyraCredentials(Block, ABC):
    """Base of every credentials block: which integration it belongs to, and how to unwrap it."""

    _documentation_url: ClassVar[str] = DOCS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._code_example = (
            f"```python\nfrom arkyra.blocks import {cls.__name__}\n\n"
            f'block = {cls.__name__}.load("BLOCK_NAME")\n'
            "credentials = block.credentials()  # inside the task that calls the provider\n```"
        )

    identifier: str = Field(description="Provider identifier, e.g. 'heygen'.")
    organization_id: str = Field(description="Owning organization.")
    integration_id: str = Field(description="Row id in the third_party table.")
    label: str | None = Field(default=None, description="A name the user gave the integration.")
    account_id: str | None = Field(default=None, description="The vendor account (no secret).")
    account_name: str | None = Field(default=None, description="The account's display name.")
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret provider options without a field of their own.",
    )

    META_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "identifier",
            "organization_id",
            "integration_id",
            "label",
            "account_id",
            "account_name",
            "options",
        }
    )

    def credentials(self) -> dict[str, str]:
        """The provider credential dict, secrets unwrapped (keep it inside the task using it)."""
        values: dict[str, str] = dict(self.options)
        for name in type(self).model_fields:
            if name in self.META_FIELDS:
                continue
            value: Any = getattr(self, name)
            if value is None:
                continue
            values[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if self.label:
            values["label"] = self.label
        return values

    @classmethod
    def credential_fields(cls) -> set[str]:
        return set(cls.model_fields) - cls.META_FIELDS


class ApiKeyCredentials(ArkyraCredentials):
    """A single API key (HeyGen, Synthesia, D-ID, Runway, ElevenLabs, Murf, Notion, AI models)."""

    _block_type_name = "ARKYRA API Key Credentials"
    _block_type_slug = "arkyra-api-key-credentials"
    _description = "An API key for one ARKYRA integration."

    api_key: SecretStr = Field(description="The vendor API key.")


class PlayHTCredentials(ArkyraCredentials):
    """PlayHT's user id and secret key."""

    _block_type_name = "ARKYRA PlayHT Credentials"
    _block_type_slug = "arkyra-playht-credentials"
    _description = "PlayHT user id and API secret for one ARKYRA integration."

    user_id: str = Field(description="PlayHT user id (X-USER-ID).")
    api_key: SecretStr = Field(description="PlayHT API secret.")


class WebhookCredentials(ArkyraCredentials):
    """An outgoing webhook endpoint and its Standard Webhooks signing secret."""

    _block_type_name = "ARKYRA Webhook Credentials"
    _block_type_slug = "arkyra-webhook-credentials"
    _description = "Destination URL and whsec_ signing secret for one ARKYRA webhook."

    url: SecretStr = Field(description="Destination URL (may carry a token).")
    secret: SecretStr | None = Field(default=None, description="Standard Webhooks secret.")


class HookUrlCredentials(ArkyraCredentials):
    """A Zapier, Make or n8n hook URL (with n8n's optional header auth), or an Apprise URL."""

    _block_type_name = "ARKYRA Hook URL Credentials"
    _block_type_slug = "arkyra-hook-url-credentials"
    _description = "Automation hook URL (the URL is the credential) for one ARKYRA integration."

    url: SecretStr = Field(description="Hook URL.")
    header_name: str | None = Field(default=None, description="n8n header-auth name.")
    header_value: SecretStr | None = Field(default=None, description="n8n header-auth value.")


class GoogleServiceAccountCredentials(ArkyraCredentials):
    """A Google service account key plus the sheet, property or report it reads."""

    _block_type_name = "ARKYRA Google Service Account"
    _block_type_slug = "arkyra-google-service-account"
    _description = "Google service-account JSON key for Sheets, GA4 or Looker Studio."

    service_account_json: SecretStr = Field(description="The service account's JSON key.")
    spreadsheet_id: str | None = Field(default=None, description="Google Sheets id.")
    property_id: str | None = Field(default=None, description="GA4 property id.")
    report_id: str | None = Field(default=None, description="Looker Studio report id.")


class PostHogCredentials(ArkyraCredentials):
    """A PostHog personal API key, host and project."""

    _block_type_name = "ARKYRA PostHog Credentials"
    _block_type_slug = "arkyra-posthog-credentials"
    _description = "PostHog personal API key, host and project id."

    api_key: SecretStr = Field(description="Personal API key (phx_...).")
    host: str | None = Field(default=None, description="US, EU or self-hosted URL.")
    project_id: str | None = Field(default=None, description="Project id.")


class AmplitudeCredentials(ArkyraCredentials):
    """Amplitude API key, secret key and data region."""

    _block_type_name = "ARKYRA Amplitude Credentials"
    _block_type_slug = "arkyra-amplitude-credentials"
    _description = "Amplitude API key and secret key with the data region."

    api_key: SecretStr = Field(description="Project API key.")
    secret_key: SecretStr = Field(description="Project secret key.")
    region: Literal["us", "eu"] = Field(default="us", description="Data region.")


BLOCK_TYPES: dict[str, type[ArkyraCredentials]] = {
    "heygen": ApiKeyCredentials,
    "synthesia": ApiKeyCredentials,
    "d-id": ApiKeyCredentials,
    "runway": ApiKeyCredentials,
    "elevenlabs": ApiKeyCredentials,
    "murf": ApiKeyCredentials,
    "playht": PlayHTCredentials,
    "webhooks": WebhookCredentials,
    "zapier": HookUrlCredentials,
    "make": HookUrlCredentials,
    "n8n": HookUrlCredentials,
    "apprise": HookUrlCredentials,
    "notion": ApiKeyCredentials,
    "airtable": ApiKeyCredentials,
    "google-sheets": GoogleServiceAccountCredentials,
    "ga4": GoogleServiceAccountCredentials,
    "looker-studio": GoogleServiceAccountCredentials,
    "posthog": PostHogCredentials,
    "amplitude": AmplitudeCredentials,
    "openai": ApiKeyCredentials,
    "glm": ApiKeyCredentials,
    "claude": ApiKeyCredentials,
    "mistral": ApiKeyCredentials,
}


def block_type_for(identifier: str) -> type[ArkyraCredentials]:
    """The block class that stores ``identifier``'s credentials."""
    try:
        return BLOCK_TYPES[identifier]
    except KeyError:
        raise LookupError(f"no credentials block type for provider {identifier!r}") from None


def block_name_for(integration_id: str) -> str:
    """Block document name of an integration (lower case letters, digits and dashes)."""
    return f"tp-{integration_id.lower()}"


def build_block(
    identifier: str,
    *,
    organization_id: str,
    integration_id: str,
    credentials: dict[str, str],
    account_id: str | None = None,
    account_name: str | None = None,
) -> ArkyraCredentials:
    """A block holding ``credentials`` (validated field by field by the block's model).

    Secret fields must have a ``SecretStr`` field on the block (a test checks every provider);
    any other field the block does not name is kept in ``options``.
    """
    cls = block_type_for(identifier)
    own = cls.credential_fields()
    values = {k: v for k, v in credentials.items() if k in own}
    options = {k: v for k, v in credentials.items() if k not in own and k != "label"}
    return cls(
        identifier=identifier,
        organization_id=organization_id,
        integration_id=integration_id,
        label=credentials.get("label"),
        account_id=account_id,
        account_name=account_name,
        options=options,
        **values,
    )


ALL_BLOCK_TYPES: tuple[type[ArkyraCredentials], ...] = tuple(dict.fromkeys(BLOCK_TYPES.values()))
