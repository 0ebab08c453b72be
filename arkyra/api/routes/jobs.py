"""``/jobs``: background jobs' status, progress, result or error (own organization only).

``GET /jobs`` lists the newest (of one integration or in one state, when asked);
``GET /jobs/{job_id}`` reports one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from arkyra.api.deps import JobsDep, rate_limit
from arkyra.api.jobs import MAX_RECENT_JOBS
from arkyra.api.schemas import ErrorResponse, JobResponse
from arkyra.security.tokens import Principal

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid bearer token."},
        404: {"model": ErrorResponse, "description": "No such job in this organization."},
        429: {"model": ErrorResponse, "description": "Rate limit exceeded; see Retry-After."},
    },
)

JobStatus = Literal["queued", "running", "succeeded", "failed", "interrupted"]
Limited = Annotated[Principal, Depends(rate_limit())]


@router.get("", response_model=list[JobResponse], summary="Recent jobs")
async def list_jobs(
    principal: Limited,
    jobs: JobsDep,
    integration_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECENT_JOBS)] = 20,
) -> list[dict[str, Any]]:
    """This organization's jobs, newest first; of one integration or in one state when asked."""
    views = await jobs.recent(
        principal.organization_id, integration_id=integration_id, status=status, limit=limit
    )
    return [view.__dict__ for view in views]


@router.get("/{job_id}", response_model=JobResponse, summary="A job's state")
async def get_job(
    job_id: Annotated[str, Path(min_length=1, max_length=64)],
    principal: Limited,
    jobs: JobsDep,
) -> dict[str, Any]:
    """``queued``, ``running``, ``succeeded`` (with ``result``), ``failed`` (with ``error``)
    or ``interrupted`` (the process running it stopped)."""
    view = await jobs.get(principal.organization_id, job_id)
    return view.__dict__
