"""The sandbox: one ASGI app that emulates every vendor API the project uses.

Each vendor lives in ``arkyra/sandbox/vendors/<name>.py`` and exports ``IDENTIFIER``,
``routes(state) -> list[BaseRoute]`` and ``error_response(kind, status, retry_after)`` (the
vendor's own error body for injected faults). Vendors are mounted at ``/<identifier>``, which is
the base URL ``Settings.base_url_for`` gives in sandbox mode.

Control routes, for the demo, tests and benchmarks:
``GET|PUT /_sandbox/faults/{provider}``, ``GET /_sandbox/calls``, ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from types import ModuleType

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from arkyra.sandbox.state import SandboxState


def vendor_modules() -> list[ModuleType]:
    """Every emulator module under ``arkyra.sandbox.vendors``."""
    import arkyra.sandbox.vendors as package

    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    ]


class FaultInjector:
    """Applies a vendor's fault knobs before its routes answer, and counts every call."""

    def __init__(self, app: ASGIApp, vendor: ModuleType, state: SandboxState) -> None:
        self.app = app
        self.vendor = vendor
        self.state = state
        self.identifier: str = vendor.IDENTIFIER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        faults = self.state.faults_for(self.identifier)
        self.state.count(self.identifier, f"{scope['method']} {scope['path']}")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        fault = faults.draw(self.state.rng)
        if fault == "timeout":
            await asyncio.sleep(faults.timeout_seconds)
            response: Response = self.vendor.error_response("error", 504, None)
        elif fault == "rate_limit":
            response = self.vendor.error_response("rate_limit", 429, faults.retry_after_seconds)
            response.headers.setdefault("Retry-After", f"{faults.retry_after_seconds:g}")
        elif fault == "error":
            response = self.vendor.error_response("error", faults.error_status, None)
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def create_app(state: SandboxState | None = None) -> Starlette:
    """Build the sandbox app; pass a ``state`` to inspect or steer it from tests."""
    state = state or SandboxState()
    mounts: list[Mount | Route] = []
    for vendor in vendor_modules():
        router = Router(routes=vendor.routes(state))
        mounts.append(Mount(f"/{vendor.IDENTIFIER}", app=FaultInjector(router, vendor, state)))

    async def get_faults(request: Request) -> JSONResponse:
        return JSONResponse(state.faults_for(request.path_params["provider"]).to_dict())

    async def put_faults(request: Request) -> JSONResponse:
        faults = state.faults_for(request.path_params["provider"])
        try:
            faults.update(await request.json())
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(faults.to_dict())

    async def calls(request: Request) -> JSONResponse:
        return JSONResponse({"calls": dict(state.calls), "paid_calls": dict(state.paid_calls)})

    async def reset(request: Request) -> Response:
        state.reset()
        return Response(status_code=204)

    async def index(request: Request) -> JSONResponse:
        vendors = [m.IDENTIFIER for m in vendor_modules()]
        return JSONResponse({"sandbox": "arkyra", "vendors": vendors})

    control = [
        Route("/", index),
        Route("/_sandbox/faults/{provider}", get_faults, methods=["GET"]),
        Route("/_sandbox/faults/{provider}", put_faults, methods=["PUT"]),
        Route("/_sandbox/calls", calls),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=control + mounts)
    app.state.sandbox = state
    return app
