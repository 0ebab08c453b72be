"""Cache locks and results that a killed worker left half-written never block later runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

from arkyra.tasks import _paid
from arkyra.tasks._paid import ResultsLockManager, set_aside_torn_result


@pytest.fixture
def results(tmp_path: Path):  # type: ignore[no-untyped-def]
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path}):
        yield tmp_path


def _torn_lock(manager: ResultsLockManager, key: str, age: float) -> Path:
    path = Path(manager._lock_path_for_key(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # Prefect touches the file, then writes it: killed in between
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_an_abandoned_empty_lock_is_removed(results: Path) -> None:
    manager = ResultsLockManager()
    path = _torn_lock(manager, "video-abc", age=_paid.TORN_LOCK_GRACE_SECONDS + 5)
    assert manager.is_locked("video-abc") is False
    assert not path.exists()
    assert manager.acquire_lock("video-abc", "holder-1")


def test_a_lock_being_written_counts_as_held(results: Path) -> None:
    manager = ResultsLockManager()
    path = _torn_lock(manager, "video-abc", age=0)
    assert manager.is_locked("video-abc") is True
    assert path.exists()


def test_a_torn_result_is_set_aside_unless_someone_holds_its_lock(results: Path) -> None:
    (results / "video-1").write_bytes(b'{"metadata": {"storage')
    set_aside_torn_result("video-1")
    assert not (results / "video-1").exists()
    assert list(results.glob("video-1.torn-*"))

    (results / "video-2").write_bytes(b"")
    manager = ResultsLockManager()
    assert manager.acquire_lock("video-2", "writer")
    set_aside_torn_result("video-2")
    assert (results / "video-2").exists()  # its writer is alive: leave it be

    (results / "video-3").write_bytes(b'{"metadata": {}, "result": null}')
    set_aside_torn_result("video-3")
    assert (results / "video-3").exists()
