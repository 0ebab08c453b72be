"""``GET /jobs/{job_id}``: a background job's status, progress, result or error (own org only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from arkyra.api.deps import JobsDep, rate_limit
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


@router.get("/{job_id}", response_model=JobResponse, summary="A job's state")
async def get_job(
    job_id: Annotated[str, Path(min_length=1, max_length=64)],
    principal: Annotated[Principal, Depends(rate_limit())],
    jobs: JobsDep,
) -> dict[str, Any]:
    """``queued``, ``running``, ``succeeded`` (with ``result``), ``failed`` (with ``error``)
    or ``interrupted`` (the process running it stopped)."""
    view = await jobs.get(principal.organization_id, job_id)
    return view.__dict__
