"""Jobs: the shared lifecycle of scans, mixtures and verifications."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import jobs as job_records
from service.api.deps import CurrentProject, IdempotencyKey, PageDep, SessionDep, SettingsDep
from service.api.errors import Problem, not_found, too_many_requests
from service.api.idempotency import create_once
from service.api.pagination import paginate
from service.auth import ProjectRef
from service.celery_app import enqueue
from service.db import get_sessionmaker
from service.kinds import KINDS
from service.models import Job, JobState
from service.schemas import ArtifactsPublic, JobCreate, JobPublic, JobsPublic
from service.settings import Settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = logging.getLogger("skillmix.api")

EVENT_POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
# Retry-After for a create refused by the cap on active jobs: a guess, as jobs take seconds
# to hours; short enough that a client's few retries can catch a short job finishing.
ACTIVE_JOBS_RETRY_AFTER_SECONDS = 10


def get_job(session: SessionDep, project: ProjectRef, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.project_id != project.id:
        raise not_found("Job", job_id)
    return job


def start_job(
    session: Session,
    *,
    project_id: str,
    kind: str,
    params: dict[str, Any],
    settings: Settings,
    queue: str | None = None,
) -> tuple[Job, Callable[[], None]]:
    """Add a queued job row; return it and the hook that enqueues it once committed.
    429 (and nothing added) when the project already has its cap of active jobs."""
    ensure_room(session, project_id, settings.max_active_jobs_per_project)
    job_kind = KINDS[kind]
    job = job_records.create_job(
        session,
        project_id=project_id,
        kind=kind,
        queue=queue or job_kind.queue,
        params=params,
        max_attempts=settings.max_attempts,
    )
    session.flush()
    session.refresh(job)
    return job, lambda: submit(session, job)


def ensure_room(session: Session, project_id: str, cap: int) -> None:
    """Refuse a new job when the project has `cap` queued or running ones (0: no cap). The
    count locks the project until the transaction that adds the job ends."""
    if cap <= 0:
        return
    active = job_records.count_active_locked(session, project_id)
    if active >= cap:
        raise too_many_requests(
            "too-many-active-jobs",
            "Too many active jobs",
            f"This project has {active} queued or running jobs and may have at most {cap} "
            "at once (SKILLMIX_MAX_ACTIVE_JOBS_PER_PROJECT); retry when one has finished, "
            "or cancel one.",
            ACTIVE_JOBS_RETRY_AFTER_SECONDS,
            active_jobs=active,
            max_active_jobs=cap,
        )


def submit(session: Session, job: Job) -> None:
    """Hand a committed job to the broker. If the broker is down the job stays queued and
    the sweeper sends it later, so the create still succeeds."""
    try:
        enqueue(job.id, job.queue)
    except Exception:
        log.warning("could not enqueue job %s; the sweeper will retry", job.id, exc_info=True)
        return
    job_records.mark_enqueued(session, job.id)


@router.post("", operation_id="jobs_create", status_code=202, response_model=JobPublic)
def create_job(
    *,
    body: JobCreate,
    request: Request,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Start a diagnostic job (kind `sleep`)."""

    def create() -> tuple[dict[str, Any], Callable[[], None]]:
        job, after_commit = start_job(
            session,
            project_id=project.id,
            kind=body.kind,
            params=body.params.model_dump(),
            settings=settings,
            queue=body.queue,
        )
        return JobPublic.of(job).model_dump(mode="json"), after_commit

    return create_once(
        session,
        request,
        body,
        project_id=project.id,
        key=idempotency_key,
        status_code=202,
        create=create,
    )


@router.get("", operation_id="jobs_list", response_model=JobsPublic)
def list_jobs(*, session: SessionDep, project: CurrentProject, page: PageDep) -> JobsPublic:
    """List this project's jobs, newest first."""
    stmt = select(Job).where(Job.project_id == project.id)
    return JobsPublic.model_validate(paginate(session, stmt, Job.id, page, JobPublic.of))


@router.get("/{job_id}", operation_id="jobs_retrieve", response_model=JobPublic)
def read_job(*, job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    """One job: state, progress, attempts, error, result and artifacts."""
    return JobPublic.of(get_job(session, project, job_id))


@router.post("/{job_id}/cancel", operation_id="jobs_cancel", response_model=JobPublic)
def cancel_job(*, job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    """Cancel a queued or running job; a job already finished answers 409."""
    job = get_job(session, project, job_id)
    if not job_records.cancel(session, job):
        raise Problem(
            409,
            "job-finished",
            "Job already finished",
            f"Job {job_id} is {job.state}; only queued or running jobs can be cancelled.",
            state=job.state,
        )
    return JobPublic.of(job)


@router.get(
    "/{job_id}/events",
    operation_id="jobs_events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def job_events(*, job_id: str, session: SessionDep, project: CurrentProject) -> StreamingResponse:
    """Server-sent events: one `progress` event per change, then `end` at a final state."""
    get_job(session, project, job_id)
    return StreamingResponse(
        _event_stream(job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _snapshot(job_id: str) -> dict | None:
    with get_sessionmaker()() as session:
        job = session.get(Job, job_id)
        return JobPublic.of(job).model_dump(mode="json") if job else None


async def _event_stream(job_id: str) -> AsyncIterator[str]:
    last: str | None = None
    idle = 0.0
    while True:
        snap = await run_in_threadpool(_snapshot, job_id)
        if snap is None:
            return
        data = json.dumps(snap)
        if data != last:
            last, idle = data, 0.0
            yield f"event: progress\nid: {snap['updated_at']}\ndata: {data}\n\n"
        if JobState(snap["state"]).is_final:
            yield f"event: end\ndata: {data}\n\n"
            return
        await asyncio.sleep(EVENT_POLL_SECONDS)
        idle += EVENT_POLL_SECONDS
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield ": keep-alive\n\n"


@router.get(
    "/{job_id}/artifacts", operation_id="jobs_artifacts_list", response_model=ArtifactsPublic
)
def list_artifacts(*, job_id: str, session: SessionDep, project: CurrentProject) -> ArtifactsPublic:
    """The job's named artifacts (reports, plots, manifests)."""
    return ArtifactsPublic(data=JobPublic.of(get_job(session, project, job_id)).artifacts)


@router.get(
    "/{job_id}/artifacts/{name:path}",
    operation_id="jobs_artifacts_download",
    response_class=FileResponse,
    # Artifacts are JSON reports and PNG plots (each served with its own media type).
    responses={
        200: {
            "content": {
                "application/json": {},
                "image/png": {},
                "application/octet-stream": {},
            }
        }
    },
)
def download_artifact(
    *, job_id: str, name: str, session: SessionDep, project: CurrentProject
) -> FileResponse:
    """Download one artifact by name."""
    job = get_job(session, project, job_id)
    for artifact in job.artifacts or []:
        if artifact["name"] == name and Path(artifact["path"]).is_file():
            return FileResponse(artifact["path"], media_type=artifact["media_type"], filename=name)
    raise not_found("Artifact", name)
