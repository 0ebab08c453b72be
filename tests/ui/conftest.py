"""Browser tests: the real app served by uvicorn on 127.0.0.1, driven by Debian's Chromium.

The app is wired to the sandbox (served on loopback too), a SQLite database under the test's
tmp directory and the session's temporary Prefect API (for credential blocks). Playwright's
Python package drives ``/usr/bin/chromium``; no browser is downloaded. Without either, every
test here is skipped with the reason. Screenshots go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from arkyra.api.app import create_app
from arkyra.config import Settings
from arkyra.credentials.mirror import PrefectBlockMirror
from arkyra.sandbox.server import RunningSandbox, running_sandbox
from arkyra.security.tokens import mint_token
from tests.conftest import make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]


def _require_browser() -> None:
    """Skip without a browser on a developer's machine; CI (ARKYRA_REQUIRE_BROWSER=1) fails."""
    missing = None
    if sync_playwright is None:
        missing = "playwright is not installed (.venv/bin/pip install playwright)"
    elif not CHROMIUM.exists():
        missing = "no /usr/bin/chromium (apt-get install -y chromium)"
    if missing and os.environ.get("ARKYRA_REQUIRE_BROWSER") == "1":
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One Chromium for the browser tests; closed when they are done, because Playwright's sync
    API keeps an event loop running in this thread while it is open."""
    _require_browser()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class LiveDashboard:
    url: str
    settings: Settings
    sandbox: RunningSandbox

    def token(self, org: str = "org-ui", role: str = "admin") -> str:
        return mint_token(self.settings, organization_id=org, role=role)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread that sees this context's settings
    (the Prefect test harness keeps its API URL in a context variable)."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(server.run,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _remove_blocks() -> None:
    """Leave the shared Prefect server as we found it (in a thread: Playwright's event loop
    is running in this one)."""

    async def remove() -> None:
        mirror = PrefectBlockMirror()
        for block in await mirror.list_blocks():
            await mirror.delete(block.name, block.block.identifier)

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(asyncio.run, remove()))
    thread.start()
    thread.join(timeout=30)


@pytest.fixture
def live(prefect_server: None, tmp_path: Path, sqlite_template: Path) -> Iterator[LiveDashboard]:
    _require_browser()
    database = tmp_path / "arkyra.db"
    shutil.copyfile(sqlite_template, database)
    with running_sandbox() as sandbox:
        settings = make_settings(
            tmp_path,
            sandbox=True,
            sandbox_url=sandbox.url,
            ssrf_allow_loopback=True,
            database_url=f"sqlite:///{database}",
        )
        try:
            with _serve(create_app(settings)) as url:
                yield LiveDashboard(url=url, settings=settings, sandbox=sandbox)
        finally:
            _remove_blocks()


@pytest.fixture
def page(browser: Browser, live: LiveDashboard) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Page, live: LiveDashboard, org: str = "org-ui", role: str = "admin") -> None:
    """Sign in the way a person would: the token pasted, then Enter on the button."""
    page.goto(f"{live.url}/")
    page.wait_for_url(re.compile(r"/ui/sign-in"))
    page.get_by_label("Token").fill(live.token(org, role))
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live.url}/")
