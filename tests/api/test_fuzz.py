"""Schemathesis: >= 1000 requests generated from our OpenAPI schema, and not one 5xx.

Cases are generated synchronously with Hypothesis, then sent through the same ASGI client as
every other test (so the app keeps one event loop). Half of the cases that name an
integration, function or job get real ones, so generation reaches past the 404s.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from tests.api.conftest import API_URL, connect_heygen
from tests.api.test_jobs import VIDEO

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

OUR_PATHS = ("/third-party", "/jobs", "/healthz", "/readyz", "/metrics")
EXAMPLES_PER_OPERATION = 80  # per operation and mode (positive, negative)
MINIMUM_REQUESTS = 1000


def generate_cases(app: FastAPI) -> list:
    schema = schemathesis.openapi.from_dict(app.openapi())
    cases: list = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        if not operation.path.startswith(OUR_PATHS):
            continue

        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def collect(case) -> None:
            cases.append(case)

        try:
            collect()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            continue
    return cases


@pytest.mark.timeout(600)
async def test_no_5xx_on_generated_requests(
    make_app: Callable[..., FastAPI], auth, sandbox_state
) -> None:
    unlimited = dict.fromkeys(("default", "connect", "function", "submit"), "100000/minute")
    app = make_app(limits=unlimited)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            await fuzz(app, api, auth, sandbox_state)


async def fuzz(app: FastAPI, api: httpx.AsyncClient, auth, sandbox_state) -> None:
    sandbox_state.faults_for("heygen").job_seconds = 0.01
    admin = auth()
    integration_id = await connect_heygen(api, admin)
    job_id = (
        await api.post(
            f"/third-party/{integration_id}/submit",
            json={"input": VIDEO, "wait": False},
            headers=admin,
        )
    ).json()["job_id"]
    real = {"integration_id": integration_id, "job_id": job_id, "identifier": "heygen"}
    rng = random.Random(7)
    cases = generate_cases(app)
    assert len(cases) >= MINIMUM_REQUESTS
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for case in cases:
        if case.path_parameters and rng.random() < 0.5:
            for key, value in real.items():
                if key in case.path_parameters:
                    case.path_parameters[key] = value
            if "name" in case.path_parameters:
                case.path_parameters["name"] = rng.choice(["voices", "avatars", "nope"])
        kwargs = case.as_transport_kwargs(base_url=str(api.base_url))
        headers = {**(kwargs.pop("headers", None) or {}), **admin}
        kwargs.pop("cookies", None)
        response = await api.request(headers=headers, **kwargs)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")
    assert not failures, failures[:10]
    assert statuses.get(200, 0) > 0  # generation reached real work, not only refusals
    assert statuses.get(422, 0) > 0  # and invalid input
    assert 429 not in statuses
