"""Serve every deployment of ``prefect.yaml`` from one long-lived process (no work pool).

``prefect deploy --all`` plus process workers is the production path (deployments/README.md);
``serve_all()`` is the small-team path: the same deployments, schedules, triggers and
parameters, read from the same ``prefect.yaml``, executed by this process in subprocesses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Interval, RRule, Schedule

from arkyra.pipelines.hooks import HOOK_EVENT, resource_id

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "prefect.yaml"

#: The ``hook`` flow parameter, rendered from the ``arkyra.hook.received`` event.
HOOK_PARAMETER: dict[str, str] = {
    "source": "{{ event.payload.source }}",
    "delivery_id": "{{ event.payload.delivery_id }}",
    "type": "{{ event.payload.type }}",
    "entity_id": "{{ event.payload.entity_id }}",
}


def hook_trigger(source: str) -> DeploymentEventTrigger:
    """A trigger that starts a run for each verified webhook delivery from ``source``."""
    return DeploymentEventTrigger(
        name=f"{source} webhook",
        enabled=True,
        match={"prefect.resource.id": resource_id(source)},
        expect={HOOK_EVENT},
        parameters={"hook": dict(HOOK_PARAMETER)},
    )


def _schedule(spec: dict[str, Any]) -> Schedule:
    timezone = spec.get("timezone")
    active = spec.get("active", True)
    if "cron" in spec:
        return Cron(spec["cron"], timezone=timezone, day_or=spec.get("day_or", True), active=active)
    if "interval" in spec:
        return Interval(spec["interval"], timezone=timezone, active=active)
    if "rrule" in spec:
        return RRule(spec["rrule"], timezone=timezone, active=active)
    raise ValueError(f"unsupported schedule in prefect.yaml: {sorted(spec)}")


def deployments_from(config: Path = DEFAULT_CONFIG) -> list[Any]:
    """``RunnerDeployment`` objects for every deployment declared in ``config``."""
    document = yaml.safe_load(config.read_text())
    deployments = []
    for spec in document.get("deployments") or []:
        flow = load_flow_from_entrypoint(str(config.resolve().parent / spec["entrypoint"]))
        limit = spec.get("concurrency_limit")
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or {},
                schedules=[_schedule(s) for s in spec.get("schedules") or []],
                triggers=[DeploymentEventTrigger(**t) for t in spec.get("triggers") or []],
                concurrency_limit=limit.get("limit") if isinstance(limit, dict) else limit,
            )
        )
    return deployments


def serve_all(config: Path = DEFAULT_CONFIG, *, limit: int | None = None) -> None:
    """Create the deployments of ``config`` and run their flows until interrupted."""
    serve(*deployments_from(config), limit=limit)
