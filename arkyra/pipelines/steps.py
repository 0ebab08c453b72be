"""Running one step of a pipeline and reporting a run: shared by every flow.

:func:`run_step` awaits a task for its final state, so a failure becomes a :class:`StepFailed`
carrying the attempts of the provider chain (not a failed flow), and a result served from the
cache is marked ``cached``. :func:`publish_summary` writes the run's markdown artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.artifacts import acreate_markdown_artifact

from arkyra.errors import ArkyraError
from arkyra.pipelines.costs import format_usd
from arkyra.pipelines.fallback import attempts_of, describe
from arkyra.pipelines.models import Attempt, ItemOutcome, RunSummary, StepResult


class StepFailed(ArkyraError):
    """A step of one item failed: which step, the error, and every provider tried."""

    def __init__(self, step: str, error: BaseException, attempts: list[Attempt]) -> None:
        self.step = step
        self.error = error
        self.attempts = attempts
        name, message = describe(error)
        tried = " → ".join(f"{a.provider} ✗" for a in attempts if not a.ok)
        detail = f"{name}: {message}" + (f" (tried {tried})" if tried else "")
        super().__init__(f"{step} failed: {detail}")


class PipelineFailed(ArkyraError):
    """Every item of the run failed (partial failures are reported, not raised)."""


async def run_step(step: str, task: Task[..., Any], *args: Any, **kwargs: Any) -> StepResult:
    """Run ``task`` and return its ``StepResult``; ``StepFailed`` if it ended failed."""
    state = await task(*args, return_state=True, **kwargs)  # type: ignore[call-overload]
    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        error = await state.aresult(raise_on_failure=False)
        if not isinstance(error, BaseException):
            error = ArkyraError(state.message or f"{step} did not complete")
        raise StepFailed(step, error, attempts_of(state.state_details.task_run_id))
    result: StepResult = await state.aresult()
    if state.name == "Cached":
        result = result.model_copy(update={"cached": True})
    return result


def _cell(text: str | None) -> str:
    return (text or "-").replace("|", "\\|").replace("\n", " ")


def _step_cell(outcome: ItemOutcome, kind: str) -> str:
    kinds = ("script", "digest") if kind == "script" else (kind,)
    steps = [s for s in outcome.steps if s.kind in kinds]
    if not steps:
        return "failed" if outcome.failed_step == kind else "-"
    return ", ".join(s.fallback_path for s in steps)


def _outputs(outcome: ItemOutcome) -> str:
    links = []
    for step in outcome.steps:
        if step.kind in ("video", "voice") and step.output:
            target = step.output
            label = "video" if step.kind == "video" else "audio"
            links.append(f"[{label}]({target})" if "://" in target else f"{label}: `{target}`")
    return " ".join(links) or "-"


def summary_markdown(summary: RunSummary, extra: str = "") -> str:
    """The run as a markdown table: items, providers as they ran, cost, where outputs are."""
    lines = [
        f"# {summary.flow}: {summary.succeeded} of {len(summary.items)} items done",
        "",
        f"Organization `{summary.organization_id}`; estimated cost "
        f"{format_usd(summary.cost_usd)} (cached steps cost nothing again).",
        "",
        "| item | status | script | video | voice | deliveries | cost | outputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in summary.items:
        status = "ok" if item.ok else f"failed: {_cell(item.error)}"
        lines.append(
            f"| {_cell(item.title)} | {status} | {_step_cell(item, 'script')} "
            f"| {_step_cell(item, 'video')} | {_step_cell(item, 'voice')} "
            f"| {_step_cell(item, 'delivery')} | {format_usd(item.cost_usd)} | {_outputs(item)} |"
        )
    for note in summary.notes:
        lines += ["", f"- {note}"]
    if extra:
        lines += ["", extra]
    return "\n".join(lines)


async def publish_summary(summary: RunSummary, key: str, extra: str = "") -> None:
    """Attach the summary to the flow run as a markdown artifact (versioned under ``key``)."""
    await acreate_markdown_artifact(
        markdown=summary_markdown(summary, extra),
        key=key,
        description=f"{summary.flow} run summary",
    )


def failed_outcome(
    item_id: str, title: str, steps: list[StepResult], exc: BaseException
) -> ItemOutcome:
    """An item that stopped at a step: what it finished, and why it stopped."""
    step = exc.step if isinstance(exc, StepFailed) else None
    error = str(exc) if isinstance(exc, StepFailed) else "{}: {}".format(*describe(exc))
    steps = list(steps)
    if isinstance(exc, StepFailed) and exc.attempts:
        steps.append(
            StepResult(kind=exc.step, provider="-", attempts=exc.attempts)  # type: ignore[arg-type]
        )
    return ItemOutcome(
        item_id=item_id, title=title, ok=False, steps=steps, error=error, failed_step=step
    )
