"""Request and response bodies: one schema per purpose, each with an example for the docs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class ErrorResponse(BaseModel):
    """Every error: a kind, a message for people, the request id, field errors for 422."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "invalid_input",
                    "message": "invalid credentials for heygen",
                    "request_id": "9f1c2e0b7a4d4c1f",
                    "errors": {"api_key": "API key is required"},
                }
            ]
        }
    )

    error: str
    message: str
    request_id: str | None = None
    errors: dict[str, str] | None = None


class ConnectRequest(BaseModel):
    """The provider's credential fields (see ``GET /third-party/list``), and an optional label."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"fields": {"api_key": "<your HeyGen API key>"}, "label": "Marketing"}]
        },
    )

    fields: dict[
        Annotated[str, StringConstraints(max_length=100)],
        Annotated[str, StringConstraints(max_length=65536)] | None,
    ] = Field(default_factory=dict, max_length=50, description="Field name -> value.")
    label: str | None = Field(default=None, max_length=200, description="A name for people.")

    def credential_fields(self) -> dict[str, Any]:
        values: dict[str, Any] = dict(self.fields)
        if self.label is not None:
            values["label"] = self.label
        return values


class ConnectResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6d8a3c2e-5d0f-4d8e-9b1a-2f4c1e7a9b3d",
                    "identifier": "heygen",
                    "name": "Sandbox Creator",
                }
            ]
        }
    )

    id: str
    identifier: str
    name: str
    signing_secret: str | None = Field(
        default=None,
        description="Only when a webhook was connected without a secret: the generated "
        "whsec_ secret, returned this once and never again.",
    )


class CredentialFieldSchema(BaseModel):
    name: str
    label: str
    kind: Literal["secret", "text", "json", "select", "url"]
    required: bool
    options: list[str] = Field(default_factory=list)
    help: str = ""
    secret: bool
    default: str | None = None


class CatalogueEntry(BaseModel):
    """A provider anyone in the organization may connect."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "identifier": "heygen",
                    "title": "HeyGen",
                    "description": "AI avatar videos from a script.",
                    "category": "video",
                    "deprecated": False,
                    "fields": [
                        {
                            "name": "api_key",
                            "label": "API key",
                            "kind": "secret",
                            "required": True,
                            "options": [],
                            "help": "",
                            "secret": True,
                            "default": None,
                        }
                    ],
                    "functions": ["avatars", "voices"],
                }
            ]
        }
    )

    identifier: str
    title: str
    description: str
    category: str
    deprecated: bool = False
    fields: list[CredentialFieldSchema]
    functions: list[str] = Field(default_factory=list)


class IntegrationResponse(BaseModel):
    """One of this organization's integrations, never its secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6d8a3c2e-5d0f-4d8e-9b1a-2f4c1e7a9b3d",
                    "identifier": "heygen",
                    "name": "Sandbox Creator",
                    "status": "connected",
                    "status_reason": None,
                    "last_checked_at": "2026-11-25T17:00:00+00:00",
                    "created_at": "2026-11-25T17:00:00+00:00",
                }
            ]
        }
    )

    id: str
    identifier: str
    name: str
    status: Literal["connected", "needs_reconnect", "error"]
    status_reason: str | None = None
    last_checked_at: datetime | None = None
    created_at: datetime | None = None


class FunctionCallRequest(BaseModel):
    """Input of an exposed function; the provider's own model validates ``input``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"input": {"language": "English"}}]}
    )

    input: dict[str, Any] = Field(default_factory=dict)


class FunctionCallResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"function": "voices", "result": [{"id": "v1", "name": "Ava"}]}]
        }
    )

    function: str
    result: Any


class SubmitRequest(BaseModel):
    """The provider's main action input (e.g. a HeyGen video request)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input": {
                        "script": "Hello from ARKYRA",
                        "avatar_id": "Abigail_expressive_2024112501",
                        "voice_id": "2d5b0e6cf36f460aa7fc47e3eee4ba54",
                    },
                    "wait": True,
                }
            ]
        },
    )

    input: dict[str, Any] = Field(default_factory=dict)
    wait: bool = Field(
        default=True, description="Follow a vendor render job until it is final (when it has one)."
    )


class SubmitResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"job_id": "0b7a4d4c-1f9f-4c2e-8d3a-5e6f7a8b9c0d"}]}
    )

    job_id: str


class JobResponse(BaseModel):
    """A job's state: ``queued``, ``running``, ``succeeded``, ``failed`` or ``interrupted``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b7a4d4c-1f9f-4c2e-8d3a-5e6f7a8b9c0d",
                    "integration_id": "6d8a3c2e-5d0f-4d8e-9b1a-2f4c1e7a9b3d",
                    "identifier": "heygen",
                    "kind": "submit",
                    "status": "succeeded",
                    "progress": 1.0,
                    "result": {"id": "abc", "status": "succeeded", "result_url": "https://..."},
                    "error": None,
                    "created_at": "2026-11-25T17:00:00+00:00",
                    "updated_at": "2026-11-25T17:00:05+00:00",
                    "finished_at": "2026-11-25T17:00:05+00:00",
                }
            ]
        }
    )

    id: str
    integration_id: str
    identifier: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "interrupted"]
    progress: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class DeliveryLogResponse(BaseModel):
    """One outgoing delivery of an automation integration, with its latest attempt.

    ``id`` stays the same across retries (receivers de-duplicate on it); ``next_attempt_at``
    is set while a retry is pending."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "msg_2Yh9dQ0cJ3mB8rV1xK5nLw",
                    "event_type": "pipeline.item.completed",
                    "status": "pending",
                    "attempts": 2,
                    "last_status": 503,
                    "last_error": "HTTP 503 from the receiver",
                    "latency_ms": 41.7,
                    "created_at": "2026-11-25T17:00:00+00:00",
                    "next_attempt_at": "2026-11-25T17:00:35+00:00",
                    "delivered_at": None,
                }
            ]
        }
    )

    id: str
    event_type: str
    status: Literal["pending", "delivered", "failed", "disabled"]
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    latency_ms: float | None = None
    created_at: datetime
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class CheckResult(BaseModel):
    name: str
    ok: bool
    detail: str = ""


class ReadinessResponse(BaseModel):
    """Each dependency checked: database always, Redis and Prefect when configured."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "checks": [{"name": "database", "ok": True, "detail": "sqlite"}],
                }
            ]
        }
    )

    status: Literal["ok", "unavailable"]
    checks: list[CheckResult]
