"""``arkyra demo`` end to end on the session's Prefect server, in a fresh ARKYRA home."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from arkyra.config import reset_settings_cache


def test_the_demo_runs_the_pipeline_with_a_visible_fallback(
    prefect_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arkyra.demo import run_demo

    monkeypatch.setenv("ARKYRA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "ERROR")  # restored after the test
    reset_settings_cache()
    out = io.StringIO()
    try:
        run_demo(console=Console(file=out, width=200))
    finally:
        reset_settings_cache()
    text = out.getvalue()

    assert "3 of 3 done" in text
    assert "glm ✗ → openai ✓" in text
    assert "heygen ✓" in text
    assert "elevenlabs ✓" in text
    assert "0 paid vendor calls" in text
    assert "3 signed deliveries received (3 verified by the receiver)" in text
    assert list((tmp_path / "home" / "media").glob("*.mp3"))
