"""analytics_digest: two periods from the sandbox, a pandas comparison, a digest, a voice-over."""

from __future__ import annotations

from datetime import date

import pandas as pd

from arkyra.flows.analytics import analytics_digest, periods, plain_digest
from arkyra.pipelines.models import DigestSettings, MetricsSource, VoiceSettings
from arkyra.tasks.content import compare_periods, metrics_query
from tests.pipelines.conftest import ELEVENLABS_VOICE, Pipeline


def test_periods_are_back_to_back() -> None:
    current, previous = periods(date(2026, 3, 14), 7)
    assert current == (date(2026, 3, 8), date(2026, 3, 14))
    assert previous == (date(2026, 3, 1), date(2026, 3, 7))


def test_comparison_totals_numeric_columns() -> None:
    now = pd.DataFrame({"day": ["a", "b"], "users": [10, 20], "sessions": [5, 5]})
    before = pd.DataFrame({"day": ["a", "b"], "users": [10, 5], "sessions": [0, 0]})
    table = compare_periods(now, before)
    assert table.loc["users"].tolist()[:3] == [30, 15, 15]
    assert table.loc["users", "change_pct"] == 100.0
    assert pd.isna(table.loc["sessions", "change_pct"])
    assert plain_digest(table, "ga4").startswith("users is up at 30 (+100.0%).")


def test_each_source_gets_its_dates() -> None:
    source = MetricsSource(integration={"identifier": "ga4"}, query={"metrics": ["sessions"]})
    query = metrics_query(source, date(2026, 1, 1), date(2026, 1, 7))
    assert query["date_ranges"] == [{"start_date": "2026-01-01", "end_date": "2026-01-07"}]
    posthog = MetricsSource(integration={"identifier": "posthog"})
    values = metrics_query(posthog, date(2026, 1, 1), date(2026, 1, 7))["values"]
    assert values == {"start": "2026-01-01", "end": "2026-01-08"}


async def test_digest_from_amplitude_with_a_voice_over(pipeline: Pipeline) -> None:
    amplitude = await pipeline.connect("amplitude", {"api_key": "amp-key", "secret_key": "amp-s"})
    eleven = await pipeline.connect("elevenlabs", {"api_key": "el_sandbox"})
    eleven.options = {"voice_id": ELEVENLABS_VOICE}
    summary = await analytics_digest(
        organization_id=pipeline.org,
        metrics=MetricsSource(integration=amplitude, period_days=7),
        digest=DigestSettings(providers=[pipeline.fake_ai("claude")]),
        voice=VoiceSettings(providers=[eleven]),
        end_date=date(2026, 3, 14),
    )

    outcome = summary.items[0]
    assert outcome.ok, outcome.error
    kinds = {s.kind: s for s in outcome.steps}
    assert kinds["digest"].provider == "claude"
    assert kinds["voice"].output.endswith(".mp3")
    assert pipeline.paid_calls == {"elevenlabs": 1}
    assert pipeline.ai_calls == ["claude"]
