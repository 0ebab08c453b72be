"""The credential block types meet Prefect's collection standards and register with a server."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from arkyra.blocks import ALL_BLOCK_TYPES, ArkyraCredentials, build_block
from arkyra.blocks.credentials import BLOCK_TYPES
from arkyra.providers import all_providers


@pytest.mark.parametrize("block", ALL_BLOCK_TYPES, ids=lambda b: b.__name__)
def test_block_standards(block: type[ArkyraCredentials]) -> None:
    assert block.get_description()
    assert block._documentation_url
    for name, field in block.model_fields.items():
        assert field.description, f"{block.__name__}.{name} has no description"
        assert field.description.endswith("."), f"{block.__name__}.{name}"
    example = block.get_code_example() or ""
    assert re.search(rf"from .* import {block.__name__}", example)
    assert re.search(rf'.* = {block.__name__}\.load\("BLOCK_NAME"\)', example)


def test_every_provider_has_a_block_type_holding_its_fields() -> None:
    for provider in all_providers():
        block = BLOCK_TYPES[provider.identifier]
        for spec in provider.fields:
            if not spec.is_secret:
                continue  # non-secret options may live in the block's `options`
            assert spec.name in block.credential_fields(), f"{provider.identifier}.{spec.name}"
            annotation = str(block.model_fields[spec.name].annotation)
            assert "SecretStr" in annotation, f"{provider.identifier}.{spec.name}"


def test_undeclared_options_round_trip() -> None:
    block = build_block(
        "looker-studio",
        organization_id="o",
        integration_id="i",
        credentials={"service_account_json": "{}", "report_id": "r", "delegated_user": "a@b.c"},
    )
    assert block.options == {"delegated_user": "a@b.c"}
    assert block.credentials() == {
        "service_account_json": "{}",
        "report_id": "r",
        "delegated_user": "a@b.c",
    }


def test_secrets_are_masked_and_unwrapped_in_one_place() -> None:
    block = build_block(
        "playht",
        organization_id="o",
        integration_id="i",
        credentials={"user_id": "u-1", "api_key": "secret-value", "label": "Voice"},
    )
    assert "secret-value" not in repr(block)
    assert isinstance(block.api_key, SecretStr)
    assert block.credentials() == {"user_id": "u-1", "api_key": "secret-value", "label": "Voice"}


@pytest.mark.usefixtures("prefect_server")
async def test_block_types_register_with_prefect() -> None:
    for block in ALL_BLOCK_TYPES:
        await block.aregister_type_and_schema()
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        slugs = {t.slug for t in await client.read_block_types()}
    assert {b.get_block_type_slug() for b in ALL_BLOCK_TYPES} <= slugs


def test_an_apprise_url_is_kept_as_a_secret_and_round_trips() -> None:
    url = "slack://T0000TEST/B0000TEST/testtokentesttokentest00/"
    block = build_block(
        "apprise",
        organization_id="o",
        integration_id="i",
        credentials={"url": url, "label": "Ops room"},
    )
    assert isinstance(block.url, SecretStr)  # type: ignore[attr-defined]
    assert "testtokentest" not in repr(block)
    assert block.options == {}
    assert block.credentials() == {"url": url, "label": "Ops room"}
