"""Shared fixtures: settings with test keys, and the sandbox served in-process over ASGI.

No test reaches the internet: vendor HTTP goes to the sandbox (through ``httpx.ASGITransport``)
or to respx.
"""

from __future__ import annotations

import os

# Prefect reads .env and PREFECT_API_URL; keep a developer's settings out of the tests, and
# never let a Prefect server send telemetry.
os.environ["PREFECT_API_URL"] = ""
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import logging
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from arkyra.config import Settings
from arkyra.db import migrate
from arkyra.db.models import Base
from arkyra.db.session import Database, sync_url
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.sandbox.app import create_app
from arkyra.sandbox.state import SandboxState

SANDBOX_URL = "http://sandbox.test"
TEST_ENCRYPTION_KEY = "t1:" + "A" * 42 + "Q"  # 32 bytes of zeros+, base64url


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for tests: explicit keys, the sandbox base URLs, fast job polling."""
    values: dict[str, object] = {
        "home": home,
        "encryption_keys": TEST_ENCRYPTION_KEY,
        "fingerprint_key": "fingerprint-key-for-tests-only-000000",
        "jwt_secret": "jwt-secret-for-tests-only-0000000000000000",
        "sandbox": True,
        "sandbox_url": SANDBOX_URL,
        "http_max_attempts": 3,
        "retry_after_max_seconds": 2.0,
        "job_poll_initial_seconds": 0.01,
        "job_poll_max_seconds": 0.05,
        "job_deadline_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def sandbox_state() -> SandboxState:
    return SandboxState(seed=1234)


@pytest.fixture
async def sandbox_client(sandbox_state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose transport is the sandbox app itself (no sockets)."""
    transport = httpx.ASGITransport(app=create_app(sandbox_state))
    async with httpx.AsyncClient(transport=transport, base_url=SANDBOX_URL) as client:
        yield client


@pytest.fixture
def provider_factory(
    settings: Settings, sandbox_client: httpx.AsyncClient
) -> Callable[[str], ThirdPartyProvider]:
    """``provider_factory("heygen")``: the real provider, talking to the in-process sandbox."""

    def make(identifier: str) -> ThirdPartyProvider:
        return get_provider(identifier, settings=settings, client=sandbox_client)

    return make


# -- databases: SQLite always, PostgreSQL when ARKYRA_TEST_DATABASE_URL is set ------------------


PG_URL = os.environ.get("ARKYRA_TEST_DATABASE_URL") or None
REDIS_URL = os.environ.get("ARKYRA_TEST_REDIS_URL") or None
BACKENDS = ["sqlite", "postgresql"]


def _migrate(url: str, home: Path) -> None:
    migrate.upgrade(make_settings(home, database_url=url))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrations run once per session)."""
    home = tmp_path_factory.mktemp("sqlite-template")
    path = home / "template.db"
    _migrate(f"sqlite:///{path}", home)
    return path


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session, migrated, dropped at the end."""
    if not PG_URL:
        yield None
        return
    admin = create_engine(sync_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"arkyra_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    _migrate(url, tmp_path_factory.mktemp("pg"))
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, postgres_url: str | None
) -> str:
    """Each database test runs on SQLite and, when configured, on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "arkyra.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    if postgres_url is None:
        pytest.skip("ARKYRA_TEST_DATABASE_URL is not set")
    return postgres_url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        if database.dialect == "postgresql":
            tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
            async with database.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        await database.dispose()


@pytest.fixture
def db_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


# -- Prefect: one harness for the whole session, started only when a test asks for it -----------


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API (SQLite) for tests that store blocks or run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(autouse=True)
def _no_blocks_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share one Prefect server: remove the credential blocks a test wrote after it."""
    yield
    if "prefect_server" not in request.fixturenames:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for doc in client.read_block_documents(include_secrets=False):
            if (doc.name or "").startswith("tp-"):
                client.delete_block_document(doc.id)


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not REDIS_URL:
        pytest.skip("ARKYRA_TEST_REDIS_URL is not set")
    return REDIS_URL


# -- reporting: show which real services the suite used -----------------------------------------

_backend_runs: dict[str, int] = {"postgresql": 0, "redis": 0}


def pytest_report_header(config: pytest.Config) -> list[str]:
    pg = make_url(PG_URL).render_as_string(hide_password=True) if PG_URL else "not set (skipped)"
    return [f"arkyra: PostgreSQL tests: {pg}", f"arkyra: Redis tests: {REDIS_URL or 'not set'}"]


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") == "true" and not (PG_URL and REDIS_URL):
        raise pytest.UsageError(
            "CI=true needs ARKYRA_TEST_DATABASE_URL and ARKYRA_TEST_REDIS_URL (see .ci/run)"
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        if "postgresql" in report.nodeid:
            _backend_runs["postgresql"] += 1
        if "redis" in report.nodeid:
            _backend_runs["redis"] += 1


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    terminalreporter.write_line(
        f"arkyra: {_backend_runs['postgresql']} tests passed on PostgreSQL, "
        f"{_backend_runs['redis']} on Redis"
    )


# -- a secret scan over every log record the whole suite produces --------------------------------

# A key prefix counts only where a token starts: random url-safe values the app itself makes
# (CSRF tokens, request ids) can hold "-sk-" or "_hg_" by chance, and are not credentials.
_NOT_INSIDE_A_TOKEN = r"(?<![A-Za-z0-9_-])"

SECRET_PATTERNS = [
    re.compile(_NOT_INSIDE_A_TOKEN + r"whsec_[A-Za-z0-9+/]{20,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(_NOT_INSIDE_A_TOKEN + r"sk-[A-Za-z0-9_-]{12,}"),
    re.compile(_NOT_INSIDE_A_TOKEN + r"phx_[A-Za-z0-9]{12,}"),
    re.compile(_NOT_INSIDE_A_TOKEN + r"hg_[A-Za-z0-9_]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(re.escape(TEST_ENCRYPTION_KEY.split(":", 1)[1])),
]


class SecretScan(logging.Handler):
    """Records each log line that looks like it carries a credential, and which test wrote it."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.current = "(collection)"
        self.findings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is not our concern here
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        for pattern in SECRET_PATTERNS:
            match = pattern.search(text)
            if match:
                self.findings.append(f"{self.current}: {record.name}: ...{match.group(0)[:12]}...")
                return


_scan = SecretScan()


# The API's JSON field and the dashboard's read-only field for a generated webhook secret.
SHOWN_ONCE = re.compile(
    r'"signing_secret":\s*"whsec_[^"]*"|id="signing-secret"[^>]*value="whsec_[^"]*"'
)


class ScanResponseBodies:
    """ASGI middleware for every app the suite builds: response bodies go through the same scan."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def scanning_send(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.body" and message.get("body"):
                # The one deliberate exception: a generated webhook secret, shown once at connect.
                text = SHOWN_ONCE.sub("", bytes(message["body"]).decode("latin-1"))
                for pattern in SECRET_PATTERNS:
                    match = pattern.search(text)
                    if match:
                        _scan.findings.append(
                            f"{_scan.current}: response to {scope.get('path')}: "
                            f"...{match.group(0)[:12]}..."
                        )
                        break
            await send(message)

        await self.app(scope, receive, scanning_send)


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(_scan)
    import arkyra.api.app as api_app

    original = api_app.create_app

    def create_app_with_scan(*args, **kwargs):  # type: ignore[no-untyped-def]
        app = original(*args, **kwargs)
        app.add_middleware(ScanResponseBodies)
        return app

    api_app.create_app = create_app_with_scan


def pytest_runtest_setup(item: pytest.Item) -> None:
    _scan.current = item.nodeid


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_scan)
    if _scan.findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.ensure_newline()
        lines = [
            "secret scan: log records that carry something secret-shaped:",
            *_scan.findings[:50],
        ]
        for line in lines:
            (reporter.write_line if reporter else print)(line)
