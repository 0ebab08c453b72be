"""The command line: real commands against the sandbox, and clear errors for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from arkyra.cli import app
from arkyra.config import reset_settings_cache
from arkyra.sandbox.server import running_sandbox
from tests.conftest import TEST_ENCRYPTION_KEY

runner = CliRunner()
JWT_SECRET = "cli-test-secret-cli-test-secret-0000"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ARKYRA_HOME", str(tmp_path))
    monkeypatch.setenv("ARKYRA_ENCRYPTION_KEYS", TEST_ENCRYPTION_KEY)
    monkeypatch.setenv("ARKYRA_FINGERPRINT_KEY", "cli-fingerprint-key-0000000000")
    monkeypatch.setenv("ARKYRA_JWT_SECRET", JWT_SECRET)
    monkeypatch.delenv("ARKYRA_DATABASE_URL", raising=False)
    reset_settings_cache()
    yield tmp_path
    reset_settings_cache()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["integrations", "connect", "nope", "--org", "a"], "unknown provider 'nope'"),
        (["integrations", "connect", "heygen", "--org", "a", "--field", "api_key"], "key=value"),
        (["integrations", "connect", "heygen", "--org", "a"], "API key is required"),
        (
            ["integrations", "connect", "heygen", "--org", "a", "-f", "api_key=k", "-f", "x=1"],
            "unknown field",
        ),
        (["integrations", "connect", "heygen", "--org", "bad org!", "-f", "api_key=k"], "org"),
        (["token", "--org", "a", "--role", "owner"], "role must be one of"),
        (["sandbox", "--host", "0.0.0.0"], "only binds to loopback"),
        (["integrations", "remove", "nope", "--org", "a"], "no integration 'nope'"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.output


def test_missing_required_option_is_a_usage_error(cli_env: Path) -> None:
    result = invoke("integrations", "list")
    assert result.exit_code == 2
    assert "--org" in result.output


def test_token_is_a_valid_jwt_for_the_org(cli_env: Path) -> None:
    result = invoke("token", "--org", "acme", "--role", "admin")
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), JWT_SECRET, algorithms=["HS256"])
    assert (claims["org_id"], claims["role"]) == ("acme", "admin")
    assert claims["exp"] > claims["iat"]


def test_keys_generate_prints_a_usable_key(cli_env: Path) -> None:
    from arkyra.security.vault import parse_keys

    result = invoke("keys", "generate", "--id", "k7")
    assert result.exit_code == 0
    assert parse_keys(result.output.strip())[0][0] == "k7"


def test_db_upgrade_creates_the_sqlite_file(cli_env: Path) -> None:
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    from arkyra.db.migrate import latest

    assert latest() in result.output
    assert (cli_env / "arkyra.db").exists()


@pytest.mark.usefixtures("prefect_server")
def test_connect_list_rotate_sync_remove_against_the_sandbox(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_sandbox() as sandbox:
        monkeypatch.setenv("ARKYRA_SANDBOX", "true")
        monkeypatch.setenv("ARKYRA_SANDBOX_URL", sandbox.url)
        reset_settings_cache()
        bad = invoke("integrations", "connect", "heygen", "--org", "acme", "-f", "api_key=nope")
        assert bad.exit_code == 1
        assert "provider refused" in bad.output
        assert "nope" not in bad.output.replace("api_key=nope", "")

        ok = invoke(
            "integrations", "connect", "heygen", "--org", "acme", "-f", "api_key=hg_cli_key"
        )
        assert ok.exit_code == 0, ok.output
        assert "connected heygen" in ok.output
        integration_id = ok.output.strip().rsplit("(id ", 1)[1].rstrip(")")

        listed = invoke("integrations", "list", "--org", "acme", "--json")
        assert listed.exit_code == 0, listed.output
        assert integration_id in listed.output
        assert "hg_cli_key" not in listed.output

        rotated = invoke("keys", "rotate")
        assert rotated.exit_code == 0, rotated.output
        assert "0 rotated, 1 already current, 0 failed" in rotated.output

        synced = invoke("credentials", "sync")
        assert synced.exit_code == 0, synced.output
        assert "no drift" in synced.output

        removed = invoke("integrations", "remove", integration_id, "--org", "acme")
        assert removed.exit_code == 0, removed.output
        empty = invoke("integrations", "list", "--org", "acme")
        assert "no integrations" in empty.output
