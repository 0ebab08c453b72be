"""Prefect block types (registered as a Prefect collection through the package entry point)."""

from arkyra.blocks.credentials import (
    ALL_BLOCK_TYPES,
    AmplitudeCredentials,
    ApiKeyCredentials,
    ArkyraCredentials,
    GoogleServiceAccountCredentials,
    HookUrlCredentials,
    PlayHTCredentials,
    PostHogCredentials,
    WebhookCredentials,
    block_name_for,
    block_type_for,
    build_block,
)

__all__ = [
    "ALL_BLOCK_TYPES",
    "AmplitudeCredentials",
    "ApiKeyCredentials",
    "ArkyraCredentials",
    "GoogleServiceAccountCredentials",
    "HookUrlCredentials",
    "PlayHTCredentials",
    "PostHogCredentials",
    "WebhookCredentials",
    "block_name_for",
    "block_type_for",
    "build_block",
]
