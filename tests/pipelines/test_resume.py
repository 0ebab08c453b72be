"""Resume: a worker killed mid-run loses nothing it paid for.

The first run is a real process (against the session's Prefect API and the shared result
storage) that is SIGKILLed once some items are done; the second run completes the rest, and
every item is rendered (paid for) exactly once over both runs: finished items come from the
cache, renders that were in flight are picked up by job id, stale cache locks are broken.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prefect.settings import PREFECT_API_URL

from arkyra.flows.content import content_pipeline
from arkyra.pipelines.models import ContentSource, RunOptions, VideoSettings
from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID
from tests.pipelines.conftest import HEYGEN_AVATAR, HEYGEN_VOICE, Pipeline

ITEMS = 12
ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import asyncio, json, sys
from pathlib import Path

from arkyra.flows.content import content_pipeline
from arkyra.pipelines.runtime import PipelineRuntime, use_runtime
from tests.conftest import make_settings

spec = json.loads(Path(sys.argv[1]).read_text())
settings = make_settings(Path(spec["home"]), sandbox_url=spec["sandbox_url"],
                         ssrf_allow_loopback=True)
with use_runtime(PipelineRuntime(settings=settings, slot_scope="process")):
    asyncio.run(content_pipeline(**spec["parameters"]))
"""


def finished_renders(results: Path) -> int:
    """Render results Prefect has stored completely (files named by cache key ``video-<hash>``).

    A file the kill cut off half-way is not a stored result (the next run cannot read it and
    resumes the vendor job instead), so only files that parse are counted."""
    count = 0
    for path in results.glob("video-*"):
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        count += 1
    return count


def start_worker(script: Path, spec: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The first run: ``content_pipeline`` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, str(script), str(spec)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def kill_when(process: subprocess.Popen[bytes], done: int, results: Path, before: int) -> int:
    """SIGKILL the worker once ``done`` more renders are stored; how many were stored then."""
    deadline = time.monotonic() + 60
    while finished_renders(results) - before < done:
        assert process.poll() is None, "the worker ended before it could be killed"
        assert time.monotonic() < deadline, "the worker finished no render in time"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    return finished_renders(results) - before


async def test_a_killed_worker_resumes_without_paying_again(
    pipeline: Pipeline, prefect_results: Path, tmp_path: Path
) -> None:
    state = pipeline.sandbox.state
    state.store("notion")["seed_rows"] = ITEMS
    state.faults_for("heygen").job_seconds = 1.0  # renders are in flight when the kill comes
    notion = await pipeline.connect("notion", {"api_key": "secret_sandbox"})
    heygen = await pipeline.connect("heygen", {"api_key": "hg_sandbox"})
    heygen.options = {"avatar_id": HEYGEN_AVATAR, "voice_id": HEYGEN_VOICE}
    parameters = {
        "organization_id": pipeline.org,
        "source": ContentSource(
            integration=notion,
            query={"id": CONTENT_DATA_SOURCE_ID, "include_body": False},
            max_items=ITEMS,
        ),
        "video": VideoSettings(providers=[heygen], test=True),
        "options": RunOptions(max_concurrency=4),
    }
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "home": str(tmp_path / "worker"),
        "sandbox_url": pipeline.sandbox.url,
        "parameters": {k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v
                       for k, v in parameters.items()},
    }))  # fmt: skip
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(prefect_results),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    before = finished_renders(prefect_results)

    worker = start_worker(script, spec, env)
    try:
        done_when_killed = kill_when(worker, 3, prefect_results, before)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    paid_by_first = state.paid_calls["heygen"]
    assert 3 <= done_when_killed < ITEMS
    assert paid_by_first < ITEMS  # killed mid-run: some items were never submitted

    summary = await content_pipeline(**parameters)

    assert [i.ok for i in summary.items] == [True] * ITEMS
    assert state.paid_calls["heygen"] == ITEMS  # each item rendered exactly once, overall
    videos = [s for item in summary.items for s in item.steps if s.kind == "video"]
    assert sum(s.cached for s in videos) >= done_when_killed  # finished ones not re-rendered
    assert len({s.details["job_id"] for s in videos}) == ITEMS
