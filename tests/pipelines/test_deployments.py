"""prefect.yaml: every deployment loads, its parameters fit the flow's form, triggers match."""

from __future__ import annotations

import yaml

from arkyra.flows.serve import DEFAULT_CONFIG, HOOK_PARAMETER, deployments_from, hook_trigger
from arkyra.pipelines.hooks import HOOK_EVENT


def test_every_deployment_loads_with_valid_parameters() -> None:
    deployments = {d.name: d for d in deployments_from(DEFAULT_CONFIG)}

    assert set(deployments) == {"content-nightly", "content-on-notion-webhook", "analytics-weekly"}
    for deployment in deployments.values():
        assert deployment._parameter_openapi_schema.properties  # the UI form
    nightly = deployments["content-nightly"]
    assert nightly.schedules[0].schedule.cron == "0 6 * * *"
    assert nightly.schedules[0].schedule.timezone == "Europe/Berlin"
    assert nightly.concurrency_limit == 1
    webhook = deployments["content-on-notion-webhook"]
    trigger = webhook.triggers[0]
    assert trigger.match.model_dump() == {"prefect.resource.id": "arkyra.hook.notion"}
    assert trigger.expect == {HOOK_EVENT}


def test_parameters_validate_against_the_flows() -> None:
    from arkyra.flows.analytics import analytics_digest
    from arkyra.flows.content import content_pipeline

    document = yaml.safe_load(DEFAULT_CONFIG.read_text())
    flows = {"content_pipeline": content_pipeline, "analytics_digest": analytics_digest}
    for spec in document["deployments"]:
        flow = flows[spec["entrypoint"].rsplit(":", 1)[1]]
        flow.validate_parameters(spec["parameters"])


def test_yaml_trigger_and_python_trigger_agree() -> None:
    document = yaml.safe_load(DEFAULT_CONFIG.read_text())
    spec = next(d for d in document["deployments"] if d.get("triggers"))["triggers"][0]
    assert spec["parameters"] == {"hook": HOOK_PARAMETER}
    python = hook_trigger("notion")
    assert spec["match"] == python.match.model_dump()
    assert set(spec["expect"]) == python.expect


def test_presets_fit_their_flows() -> None:
    import json

    from arkyra.flows.analytics import analytics_digest
    from arkyra.flows.content import content_pipeline

    presets = sorted((DEFAULT_CONFIG.parent / "deployments" / "presets").glob("*.json"))
    assert len(presets) >= 3
    for path in presets:
        flow = analytics_digest if path.name.startswith("analytics") else content_pipeline
        flow.validate_parameters(json.loads(path.read_text()))
