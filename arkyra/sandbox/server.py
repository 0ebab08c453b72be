"""Serve the sandbox on loopback: in the foreground (``arkyra sandbox``) or in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from arkyra.sandbox.app import create_app
from arkyra.sandbox.state import SandboxState


def serve(host: str = "127.0.0.1", port: int = 8710) -> None:
    """Run the sandbox until interrupted."""
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")


@dataclass
class RunningSandbox:
    url: str
    state: SandboxState


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_sandbox(
    host: str = "127.0.0.1", port: int = 0, state: SandboxState | None = None
) -> Iterator[RunningSandbox]:
    """Start the sandbox in a background thread for the length of the ``with`` block."""
    state = state or SandboxState()
    port = port or _free_port(host)
    config = uvicorn.Config(
        create_app(state), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="arkyra-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the sandbox did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield RunningSandbox(url=f"http://{host}:{port}", state=state)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
