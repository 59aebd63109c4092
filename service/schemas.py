"""Pydantic schemas for the API, in families per entity (Create / Public / ...Public)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.models import Job


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Progress(BaseModel):
    fraction: float = Field(ge=0, le=1)
    message: str = ""


class ArtifactPublic(BaseModel):
    name: str
    media_type: str
    size: int
    url: str


class JobPublic(BaseModel):
    id: str
    kind: str
    queue: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: Progress
    attempts: int
    max_attempts: int
    error: str | None = None
    result: dict[str, Any] | None = None
    artifacts: list[ArtifactPublic] = []
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls(
            id=job.id,
            kind=job.kind,
            queue=job.queue,
            state=job.state,  # type: ignore[arg-type]
            progress=Progress(fraction=job.progress, message=job.progress_message),
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            error=job.error,
            result=job.result,
            artifacts=[
                ArtifactPublic(
                    name=a["name"],
                    media_type=a["media_type"],
                    size=a["size"],
                    url=f"/v1/jobs/{job.id}/artifacts/{a['name']}",
                )
                for a in job.artifacts or []
            ],
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobsPublic(BaseModel):
    data: list[JobPublic]
    has_more: bool
    next_after: str | None = None


class ArtifactsPublic(BaseModel):
    data: list[ArtifactPublic]


class SleepParams(StrictModel):
    seconds: float = Field(default=0.0, ge=0, le=3600)
    steps: int = Field(default=1, ge=1, le=10_000)
    fail: str | None = Field(
        default=None, max_length=500, description="Fail with this message at the end (for tests)."
    )


class JobCreate(StrictModel):
    """Create a diagnostic job. Real work (scans, mixtures, verifications) has its own
    resources; this exercises the job machinery end to end."""

    kind: Literal["sleep"] = "sleep"
    params: SleepParams = SleepParams()
    queue: Literal["curation", "training"] | None = Field(
        default=None,
        description="Run on this queue instead of the kind's own (to check "
        "that a worker pool is consuming).",
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}
