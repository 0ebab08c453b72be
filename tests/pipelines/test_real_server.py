"""A real deployment end to end: ``prefect server start`` on PostgreSQL, a process work pool and
``prefect worker start``, prefect.yaml deployed with ``prefect deploy``, ``arkyra api`` on
loopback; a signed Notion webhook at ``POST /hooks/notion`` ends as a Completed flow run.

Every piece is its own process, as in production; only the vendors are the sandbox (served by
this test). Runs when ARKYRA_TEST_DATABASE_URL is set (CI), in about a minute.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, make_url, text

from arkyra.db.session import sync_url
from arkyra.pipelines.hooks import sign_notion
from arkyra.sandbox.server import running_sandbox
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID
from tests.conftest import TEST_ENCRYPTION_KEY

PG_URL = os.environ.get("ARKYRA_TEST_DATABASE_URL") or None
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEPLOYMENT = "content-on-notion-webhook"
POOL = "arkyra-process"
NOTION_TOKEN = "secret_notion_signing_token_for_tests"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not PG_URL, reason="ARKYRA_TEST_DATABASE_URL is not set"),
]

SETUP = """
import asyncio, json, sys
from prefect.blocks.system import Secret
from arkyra.blocks.credentials import block_name_for, build_block

org, integration_id, token = sys.argv[1:4]

async def main() -> None:
    await Secret(value=token).asave("hook-notion", overwrite=True)
    block = build_block("notion", organization_id=org, integration_id=integration_id,
                        credentials={"api_key": "secret_sandbox"})
    await block.asave(block_name_for(integration_id), overwrite=True)

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A new PostgreSQL database with pg_trgm, as an asyncpg URL; dropped afterwards."""
    assert PG_URL is not None
    admin = create_engine(sync_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"arkyra_prefect_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = make_url(PG_URL).set(database=name)
    engine = create_engine(sync_url(scratch.render_as_string(hide_password=False)))
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    engine.dispose()
    try:
        yield scratch.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Processes:
    """Started processes, each stopped (TERM, then KILL) by ``stop_all``; logs in files."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running.append((name, process))
        return process

    def run(self, name: str, args: list[str], env: dict[str, str]) -> None:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, f"{name} failed:\n{done.stdout.decode()}{done.stderr.decode()}"

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.running):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def tail(self) -> str:
        return "\n".join(
            f"--- {name} ---\n" + (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
            for name, _ in self.running
        )


def wait_until(what: str, check: Any, seconds: float, processes: Processes) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, process in processes.running:
            assert process.poll() is None, f"{name} exited\n{processes.tail()}"
        with contextlib.suppress(httpx.HTTPError):
            value = check()
            if value:
                return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{processes.tail()}")


def deployment_file(path: Path, organization_id: str, integration_id: str) -> None:
    """The repo's prefect.yaml, reduced to the webhook deployment, pulled from this checkout,
    with parameters for the sandbox's Notion database."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    config.pop("definitions", None)
    config["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    (deployment,) = [d for d in config["deployments"] if d["name"] == DEPLOYMENT]
    deployment["parameters"] = {
        "organization_id": organization_id,
        "source": {
            "integration": {"identifier": "notion", "integration_id": integration_id},
            "query": {"id": CONTENT_DATA_SOURCE_ID, "include_body": False},
            "max_items": 2,
        },
    }
    config["deployments"] = [deployment]
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_signed_webhook_runs_the_deployment_on_a_real_server(tmp_path: Path) -> None:
    processes = Processes(tmp_path)
    organization_id = f"org-{uuid.uuid4().hex[:8]}"
    integration_id = uuid.uuid4().hex[:16]
    server_port, api_port = free_port(), free_port()
    prefect_api = f"http://127.0.0.1:{server_port}/api"
    state = SandboxState(seed=3)
    state.store("notion")["seed_rows"] = 2
    with scratch_database() as database, running_sandbox(state=state) as sandbox:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARKYRA_"))}
        base["PYTHONPATH"] = str(ROOT)
        server_env = {
            **base,
            "PREFECT_HOME": str(tmp_path / "server-home"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
        }
        client_env = {
            **base,
            "PREFECT_HOME": str(tmp_path / "client-home"),
            "PREFECT_API_URL": prefect_api,
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "results"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "ARKYRA_HOME": str(tmp_path / "arkyra"),
            "ARKYRA_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
            "ARKYRA_FINGERPRINT_KEY": "fingerprint-key-for-tests-only-000000",
            "ARKYRA_JWT_SECRET": "jwt-secret-for-tests-only-0000000000000000",
            "ARKYRA_SANDBOX": "true",
            "ARKYRA_SANDBOX_URL": sandbox.url,
            "ARKYRA_SSRF_ALLOW_LOOPBACK": "true",
        }
        try:
            processes.start(
                "server",
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                 "--port", str(server_port)],
                server_env,
            )  # fmt: skip
            wait_until(
                "the Prefect server",
                lambda: httpx.get(f"{prefect_api}/health", timeout=2).status_code == 200,
                90,
                processes,
            )
            processes.run(
                "setup",
                [sys.executable, "-c", SETUP, organization_id, integration_id, NOTION_TOKEN],
                client_env,
            )
            processes.run(
                "work pool",
                [str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"],
                client_env,
            )
            config = tmp_path / "prefect.yaml"
            deployment_file(config, organization_id, integration_id)
            processes.run(
                "deploy",
                [str(BIN / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(config),
                 "--all"],
                client_env,
            )  # fmt: skip
            processes.start(
                "worker",
                [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--limit", "1"],
                client_env,
            )
            processes.start(
                "api",
                [str(BIN / "arkyra"), "api", "--host", "127.0.0.1", "--port", str(api_port)],
                client_env,
            )
            api = f"http://127.0.0.1:{api_port}"
            wait_until(
                "the HTTP API",
                lambda: httpx.get(f"{api}/healthz", timeout=2).status_code == 200,
                60,
                processes,
            )
            deployment_id = httpx.get(
                f"{prefect_api}/deployments/name/content-pipeline/{DEPLOYMENT}", timeout=10
            ).json()["id"]
            delivery = f"evt-{uuid.uuid4().hex[:8]}"
            body = json.dumps({"id": delivery, "type": "page.content_updated",
                               "entity": {"id": "page-42", "type": "page"}}).encode()  # fmt: skip
            answer = httpx.post(
                f"{api}/hooks/notion",
                content=body,
                headers={
                    "X-Notion-Signature": sign_notion(NOTION_TOKEN, body),
                    "content-type": "application/json",
                },
                timeout=10,
            )
            assert answer.status_code == 202, answer.text

            def finished_run() -> dict[str, Any] | None:
                runs = httpx.post(
                    f"{prefect_api}/flow_runs/filter",
                    json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}},
                    timeout=10,
                ).json()
                for run in runs:
                    kind = (run.get("state") or {}).get("type")
                    assert kind not in ("FAILED", "CRASHED", "CANCELLED"), (
                        f"the run ended {kind}\n{processes.tail()}"
                    )
                    if kind == "COMPLETED":
                        return run
                return None

            run = wait_until("the triggered flow run to complete", finished_run, 150, processes)
            assert run["parameters"]["hook"]["delivery_id"] == delivery
            assert run["parameters"]["hook"]["entity_id"] == "page-42"
            assert state.calls  # the worker's flow run read the sandbox's Notion database
        finally:
            processes.stop_all()
