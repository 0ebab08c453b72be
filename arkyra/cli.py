"""The ``arkyra`` command line.

Heavy imports (Prefect, SQLAlchemy, providers) happen inside the commands, so ``arkyra --help``
and input errors answer at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from arkyra.config import Settings, apply_prefect_environment, get_settings
from arkyra.errors import ArkyraError, InvalidInput, NotFound, ProviderError

app = typer.Typer(
    name="arkyra",
    help="ARKYRA Pipelines: content to finished media, on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
integrations_app = typer.Typer(help="Connect, list and remove integrations.", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys for stored credentials.", no_args_is_help=True)
credentials_app = typer.Typer(help="Credential blocks and rows.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(integrations_app, name="integrations")
app.add_typer(keys_app, name="keys")
app.add_typer(credentials_app, name="credentials")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

T = TypeVar("T")

OrgOption = Annotated[str, typer.Option("--org", help="Organization id.", show_default=False)]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def run(coro_fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command, turning known errors into a message and a non-zero exit."""

    @wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(coro_fn(*args, **kwargs))
        except InvalidInput as exc:
            details = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
            raise fail(f"{exc}" + (f" ({details})" if details else "")) from None
        except NotFound as exc:
            raise fail(str(exc)) from None
        except ProviderError as exc:
            raise fail(f"the provider refused: {exc}", 1) from None
        except ArkyraError as exc:
            raise fail(str(exc), 1) from None

    return wrapper


def settings_for_cli() -> Settings:
    settings = get_settings()
    apply_prefect_environment(settings)
    return settings


def parse_fields(pairs: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--field takes key=value, got {pair!r}", {"field": pair[:40]})
        fields[key.strip()] = value
    return fields


async def _prepared_store(settings: Settings):  # type: ignore[no-untyped-def]
    from arkyra.credentials import store_from_settings
    from arkyra.db import migrate

    await asyncio.to_thread(migrate.upgrade, settings)
    return store_from_settings(settings)


# -- integrations --------------------------------------------------------------------------------


@integrations_app.command("connect")
@run
async def integrations_connect(
    identifier: Annotated[str, typer.Argument(help="Provider identifier, e.g. heygen.")],
    org: OrgOption,
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="Credential field as key=value.")
    ] = None,
) -> None:
    """Validate credentials with the provider, then store them (row + Prefect block)."""
    from arkyra.providers import provider_class

    fields = parse_fields(field or [])
    provider_class(identifier)  # unknown identifiers fail before any set-up
    settings = settings_for_cli()
    store = await _prepared_store(settings)
    try:
        integration = await store.connect(org, identifier, fields)
    finally:
        await store.db.dispose()
    out.print(
        f"connected [bold]{integration.identifier}[/] as [bold]{integration.name}[/] "
        f"(id {integration.id})",
        highlight=False,
    )


@integrations_app.command("list")
@run
async def integrations_list(
    org: OrgOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """This organization's integrations and their status."""
    settings = settings_for_cli()
    store = await _prepared_store(settings)
    try:
        rows = await store.list(org)
    finally:
        await store.db.dispose()
    if as_json:
        out.print_json(json.dumps([r.to_dict() for r in rows]))
        return
    if not rows:
        out.print(f"no integrations for organization {org!r}")
        return
    table = Table("id", "provider", "name", "status", "last checked")
    for r in rows:
        checked = r.last_checked_at.strftime("%Y-%m-%d %H:%M") if r.last_checked_at else "-"
        table.add_row(r.id, r.identifier, r.name, r.status, checked)
    out.print(table)


@integrations_app.command("remove")
@run
async def integrations_remove(
    integration_id: Annotated[str, typer.Argument(help="Integration id.")],
    org: OrgOption,
) -> None:
    """Soft-delete an integration: its block is removed, its row keeps the history."""
    settings = settings_for_cli()
    store = await _prepared_store(settings)
    try:
        await store.remove(org, integration_id)
    finally:
        await store.db.dispose()
    out.print(f"removed integration {integration_id}")


# -- keys and credentials ------------------------------------------------------------------------


@keys_app.command("rotate")
@run
async def keys_rotate() -> None:
    """Re-encrypt every stored credential under the first key of ARKYRA_ENCRYPTION_KEYS."""
    from arkyra.credentials.maintenance import rotate_keys

    settings = settings_for_cli()
    store = await _prepared_store(settings)
    try:
        report = await rotate_keys(store)
    finally:
        await store.db.dispose()
    out.print(
        f"primary key {report.primary_key_id}: {report.rotated} rotated, "
        f"{report.already_current} already current, {report.failed} failed "
        "(marked needs_reconnect)"
    )
    if report.failed:
        raise typer.Exit(1)


@keys_app.command("generate")
def keys_generate(
    key_id: Annotated[str, typer.Option("--id", help="Key id to prefix.")] = "k1",
) -> None:
    """Print a new key for ARKYRA_ENCRYPTION_KEYS (put it first to make it primary)."""
    from arkyra.config import generate_encryption_key

    out.print(f"{key_id}:{generate_encryption_key()}", highlight=False)


@credentials_app.command("sync")
@run
async def credentials_sync(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report drift only.")] = False,
) -> None:
    """Find and repair drift between Prefect blocks and ThirdParty rows."""
    from arkyra.credentials.maintenance import sync_blocks

    settings = settings_for_cli()
    store = await _prepared_store(settings)
    try:
        report = await sync_blocks(store, repair=not dry_run)
    finally:
        await store.db.dispose()
    out.print(f"checked {report.checked_rows} rows and {report.checked_blocks} blocks")
    if not report.drift:
        out.print("no drift")
        return
    table = Table("kind", "integration", "provider", "detail", "repaired")
    for d in report.drift:
        repaired = "yes" if d.repaired else "no"
        table.add_row(d.kind, d.integration_id, d.identifier, d.detail, repaired)
    out.print(table)


# -- database, sandbox, tokens -------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "heads") -> None:
    """Apply database migrations (SQLite or PostgreSQL, from ARKYRA_DATABASE_URL)."""
    from arkyra.db import migrate

    settings = get_settings()
    try:
        migrate.upgrade(settings, revision)
    except ArkyraError as exc:
        raise fail(str(exc), 1) from None
    out.print(f"database at revision {migrate.current(settings)}")


@app.command("sandbox")
def sandbox(
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8710,
) -> None:
    """Serve the local emulators of every vendor API."""
    from arkyra.sandbox.server import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise fail("the sandbox only binds to loopback (127.0.0.1, localhost or ::1)")
    out.print(f"sandbox on http://{host}:{port} (Ctrl-C to stop)")
    serve(host, port)


@app.command("api")
def api(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (integrations, AI router, hooks, dashboard)."""
    from arkyra.api.server import serve

    try:
        serve(host=host, port=port, workers=workers)
    except ArkyraError as exc:
        raise fail(str(exc), 1) from None


@app.command("serve")
def serve(
    config: Annotated[Path, typer.Option(help="prefect.yaml whose deployments to serve.")] = Path(
        "prefect.yaml"
    ),
    limit: Annotated[int | None, typer.Option(help="Flow runs at once.")] = None,
) -> None:
    """Serve every deployment of prefect.yaml from this process (no work pool needed)."""
    from arkyra.flows.serve import serve_all

    settings_for_cli()
    try:
        serve_all(config, limit=limit)
    except ArkyraError as exc:
        raise fail(str(exc), 1) from None


@app.command("token")
def token(
    org: OrgOption,
    role: Annotated[str, typer.Option(help="admin or member.")] = "member",
    subject: Annotated[str, typer.Option("--sub", help="Subject (user id).")] = "local-user",
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
) -> None:
    """Mint a JWT for local use with the HTTP API."""
    from arkyra.security.tokens import mint_token

    try:
        value = mint_token(
            get_settings(), organization_id=org, role=role, subject=subject, ttl_seconds=ttl
        )
    except ArkyraError as exc:
        raise fail(str(exc)) from None
    print(value)


@app.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="Sandbox port (0 picks a free one).")] = 0,
) -> None:
    """Run the demo end to end against the local sandbox (no accounts needed)."""
    from arkyra.demo import run_demo

    try:
        run_demo(port=port, console=out)
    except ArkyraError as exc:
        raise fail(str(exc), 1) from None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
