"""``arkyra api``: production refuses to start without its secrets, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkyra.api import server
from arkyra.config import Settings
from arkyra.errors import ConfigError


def test_production_without_a_secret_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(env="production", home=tmp_path, encryption_keys="k1:" + "A" * 43)
    monkeypatch.setattr(server, "get_settings", lambda: settings)
    started: list[object] = []
    monkeypatch.setattr(server.uvicorn, "run", lambda *a, **k: started.append((a, k)))
    with pytest.raises(ConfigError, match="ARKYRA_JWT_SECRET"):
        server.serve(port=0)
    assert started == []


def test_serve_runs_uvicorn_with_the_app(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    monkeypatch.setattr(server, "get_settings", lambda: settings)
    started: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(server.uvicorn, "run", lambda *a, **k: started.append((a, k)))
    root_handlers = list(logging.getLogger().handlers)
    try:
        server.serve(host="127.0.0.1", port=8123)
        server.serve(host="127.0.0.1", port=8124, workers=2)
    finally:
        for handler in logging.getLogger().handlers:
            if handler not in root_handlers:
                logging.getLogger().removeHandler(handler)
    (single_args, single_kwargs), (multi_args, multi_kwargs) = started
    assert single_kwargs["port"] == 8123
    assert single_kwargs["log_config"] is None
    assert hasattr(single_args[0], "router")  # an app instance
    assert multi_args == ("arkyra.api.app:create_app",)
    assert multi_kwargs["factory"] is True
    assert multi_kwargs["workers"] == 2


def test_production_refuses_an_unmigrated_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, env="production")
    monkeypatch.setattr(server, "get_settings", lambda: settings)
    monkeypatch.setattr(server.uvicorn, "run", lambda *a, **k: pytest.fail("started"))
    with pytest.raises(ConfigError, match="arkyra db upgrade"):
        server.serve(port=0)


def test_development_migrates_before_serving(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arkyra.db import migrate

    monkeypatch.setattr(server, "get_settings", lambda: settings)
    monkeypatch.setattr(server, "configure_logging", lambda: None)
    monkeypatch.setattr(server.uvicorn, "run", lambda *a, **k: None)
    server.serve(port=0)
    assert migrate.current(settings) == migrate.latest()
