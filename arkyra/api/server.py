"""``arkyra api``: serve the API with uvicorn, after checking production secrets."""

from __future__ import annotations

import uvicorn

from arkyra.api.logging import configure_logging
from arkyra.config import Settings, get_settings
from arkyra.db import migrate
from arkyra.errors import ConfigError


def require_current_schema(settings: Settings) -> None:
    """Production never migrates on start (several workers would race): it checks instead."""
    current, latest = migrate.current(settings), migrate.latest()
    if current != latest:
        raise ConfigError(
            f"the database is at revision {current or 'none'}, this release needs {latest}; "
            "run `arkyra db upgrade` first"
        )


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the API; in production a missing secret stops start-up, naming the variable."""
    settings = get_settings()
    if settings.is_production:
        settings.validate_for_startup()
        require_current_schema(settings)
    else:
        migrate.upgrade(settings)  # a new user's first run just works
    configure_logging()
    common = {
        "host": host,
        "port": port,
        "log_config": None,
        "proxy_headers": True,
        "server_header": False,
    }
    if workers > 1:
        # Each worker builds its own app (its own database pool, loop and client).
        uvicorn.run("arkyra.api.app:create_app", factory=True, workers=workers, **common)
        return
    from arkyra.api.app import create_app

    uvicorn.run(create_app(settings), **common)
