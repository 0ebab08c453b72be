"""Providers: pure async clients for every third-party API (no Prefect, no environment reads)."""

from arkyra.providers.base import (
    AccountInfo,
    CredentialField,
    ExposedInput,
    NoInput,
    ThirdPartyProvider,
    all_providers,
    api_key_field,
    catalogue_entry,
    expose,
    get_provider,
    provider_class,
    third_party,
)

__all__ = [
    "AccountInfo",
    "CredentialField",
    "ExposedInput",
    "NoInput",
    "ThirdPartyProvider",
    "all_providers",
    "api_key_field",
    "catalogue_entry",
    "expose",
    "get_provider",
    "provider_class",
    "third_party",
]
