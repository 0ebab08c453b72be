"""Chaos: every vendor fails 30 % of calls with 503 and 10 % with 429, and 100 items still
complete, each paid for once and delivered once."""

from __future__ import annotations

import base64
from collections import Counter

import httpx

from arkyra.flows.content import content_pipeline
from arkyra.pipelines.models import (
    ContentSource,
    Integration,
    RunOptions,
    ScriptSettings,
    VideoSettings,
    VoiceSettings,
)
from arkyra.pipelines.resilience import RetryPolicy
from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID
from tests.pipelines.conftest import ELEVENLABS_VOICE, HEYGEN_AVATAR, HEYGEN_VOICE, Pipeline

ITEMS = 100
VENDORS = ("notion", "glm", "heygen", "elevenlabs", "receiver")
SECRET = "whsec_" + base64.b64encode(b"c" * 24).decode()
#: Fast same-provider retries: the sandbox answers in milliseconds, so backoff can be short.
FAST_RETRIES = RetryPolicy(
    attempts=12, poll_attempts=12, base_delay_seconds=0.01, max_delay_seconds=0.1
)


async def test_a_hundred_items_survive_503s_and_429s_everywhere_paying_once(
    pipeline: Pipeline,
) -> None:
    state = pipeline.sandbox.state
    state.store("notion")["seed_rows"] = ITEMS
    async with httpx.AsyncClient(base_url=pipeline.sandbox.url) as client:
        (await client.put("/receiver/_control/chaos", json={"secret": SECRET})).raise_for_status()
    for vendor in VENDORS:
        faults = state.faults_for(vendor)
        faults.update({"error_rate": 0.3, "error_status": 503, "rate_limit_rate": 0.1,
                       "retry_after_seconds": 0.05})  # fmt: skip
    state.faults_for("heygen").job_seconds = 0.05
    pipeline.runtime.retry = FAST_RETRIES
    pipeline.runtime.slot_scope = "process"
    notion = await pipeline.connect("notion", {"api_key": "secret_sandbox"})
    heygen = await pipeline.connect("heygen", {"api_key": "hg_sandbox"})
    eleven = await pipeline.connect("elevenlabs", {"api_key": "el_sandbox"})
    heygen.options = {"avatar_id": HEYGEN_AVATAR, "voice_id": HEYGEN_VOICE}
    eleven.options = {"voice_id": ELEVENLABS_VOICE}
    url = f"{pipeline.sandbox.url}/receiver/chaos"
    hook = await pipeline.connect("webhooks", {"url": url, "secret": SECRET})
    limits = {"glm": 16, "heygen": 16, "elevenlabs": 16, "webhooks": 16}

    summary = await content_pipeline(
        organization_id=pipeline.org,
        source=ContentSource(
            integration=notion,
            query={"id": CONTENT_DATA_SOURCE_ID, "include_body": False},
            max_items=ITEMS,
        ),
        script=ScriptSettings(providers=[Integration(identifier="glm")]),
        video=VideoSettings(providers=[heygen], test=True),
        voice=VoiceSettings(providers=[eleven]),
        destinations=[hook],
        options=RunOptions(max_concurrency=16, provider_limits=limits),
    )

    failed = [(i.item_id, i.error) for i in summary.items if not i.ok]
    assert failed == []
    assert len(summary.items) == ITEMS
    for paid in ("glm", "heygen", "elevenlabs"):  # the faults were in play: refused POSTs
        posts = sum(n for call, n in state.calls.items() if call.startswith(f"{paid} POST "))
        assert posts > ITEMS * 1.2, (paid, posts)
    assert dict(state.paid_calls) == {"glm": ITEMS, "heygen": ITEMS, "elevenlabs": ITEMS}
    state.faults_for("receiver").update({"error_rate": 0, "rate_limit_rate": 0})
    async with httpx.AsyncClient(base_url=pipeline.sandbox.url) as client:
        received = (await client.get("/receiver/_control/chaos")).json()
    accepted = Counter(d["webhook_id"] for d in received["deliveries"] if d["accepted"])
    assert len(accepted) == ITEMS
    assert [wid for wid, n in accepted.items() if n > 1] == []  # none delivered twice
    assert all(d["verified"] for d in received["deliveries"])
