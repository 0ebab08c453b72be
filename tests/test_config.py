"""Settings: production refuses missing secrets by name; development makes local keys once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from arkyra.config import Settings
from arkyra.errors import ConfigError
from arkyra.security.vault import parse_keys
from tests.conftest import make_settings


def test_production_names_the_missing_variable(tmp_path: Path) -> None:
    settings = Settings(env="production", home=tmp_path, jwt_secret="x" * 40)
    with pytest.raises(ConfigError, match="ARKYRA_ENCRYPTION_KEYS"):
        settings.validate_for_startup()
    assert not (tmp_path / "local-keys.json").exists()


def test_production_with_every_secret_starts(tmp_path: Path) -> None:
    settings = Settings(
        env="production",
        home=tmp_path,
        jwt_secret="x" * 40,
        encryption_keys="k1:" + "B" * 43,
        fingerprint_key="f" * 40,
    )
    settings.validate_for_startup()


def test_development_generates_keys_once_with_private_mode(tmp_path: Path) -> None:
    first = Settings(home=tmp_path)
    key = first.require("encryption_keys")
    path = tmp_path / "local-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert parse_keys(key)[0][0] == "local1"
    second = Settings(home=tmp_path)
    assert second.require("encryption_keys") == key
    assert second.require("jwt_secret") == first.require("jwt_secret")


def test_base_url_override_then_sandbox_then_vendor(tmp_path: Path) -> None:
    vendor = "https://api.heygen.com"
    assert Settings(home=tmp_path).base_url_for("heygen", vendor) == vendor
    sandboxed = Settings(home=tmp_path, sandbox=True, sandbox_url="http://127.0.0.1:9/")
    assert sandboxed.base_url_for("d-id", "https://api.d-id.com") == "http://127.0.0.1:9/d-id"
    explicit = Settings(home=tmp_path, sandbox=True, d_id_base_url="http://x.test/v/")
    assert explicit.base_url_for("d-id", "https://api.d-id.com") == "http://x.test/v"


def test_base_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKYRA_GOOGLE_SHEETS_BASE_URL", "http://sheets.test")
    settings = Settings(home=tmp_path)
    assert settings.base_url_for("google-sheets", "https://x") == "http://sheets.test"


def test_default_database_is_sqlite_under_home(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).effective_database_url == f"sqlite:///{tmp_path}/arkyra.db"


@pytest.mark.parametrize("url", ["arkyra.example.com", "ftp://arkyra.example.com", "https://"])
def test_a_public_url_that_is_not_http_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        make_settings(tmp_path, public_url=url)


def test_rate_limits_come_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKYRA_RATE_LIMITS", '{"ai": "50/second", "connect": "5/minute"}')
    assert make_settings(tmp_path).rate_limits == {"ai": "50/second", "connect": "5/minute"}
