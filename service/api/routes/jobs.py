"""Jobs: the shared lifecycle of scans, mixtures and verifications."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from service.api.deps import CurrentProject, PageDep, SessionDep, SettingsDep
from service.api.errors import Problem, not_found
from service.api.idempotency import CreateOnceDep
from service.api.pagination import paginate
from service.api.schemas import ArtifactsPublic, JobCreate, JobPublic, JobsPublic
from service.artifacts import draw_deferred
from service.db import get_sessionmaker
from service.models import Job, JobState
from service.store import jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EVENT_POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


@router.post("", operation_id="jobs_create", status_code=202, response_model=JobPublic)
def create_job(*, body: JobCreate, create: CreateOnceDep) -> JSONResponse:
    """Start a diagnostic job (kind `sleep`)."""
    return create(
        body,
        lambda: jobs.start_job(
            create.session,
            project_id=create.project_id,
            kind=body.kind,
            params=body.params.model_dump(),
            max_attempts=create.settings.max_attempts,
            max_active=create.settings.max_active_jobs_per_project,
            queue=body.queue,
        ),
        present=lambda _, job: JobPublic.of(job),
        status_code=202,
    )


@router.get("", operation_id="jobs_list", response_model=JobsPublic)
def list_jobs(*, session: SessionDep, project: CurrentProject, page: PageDep) -> JobsPublic:
    """List this project's jobs, newest first."""
    stmt = jobs.query(project.id)
    return JobsPublic.model_validate(paginate(session, stmt, Job.id, page, JobPublic.of))


@router.get("/{job_id}", operation_id="jobs_retrieve", response_model=JobPublic)
def read_job(*, job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    """One job: state, progress, attempts, error, result and artifacts."""
    return JobPublic.of(jobs.get_job(session, project.id, job_id))


@router.post("/{job_id}/cancel", operation_id="jobs_cancel", response_model=JobPublic)
def cancel_job(*, job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    """Cancel a queued or running job; a job already finished answers 409."""
    job = jobs.get_job(session, project.id, job_id)
    if not jobs.cancel(session, job):
        raise Problem(
            409,
            "job-finished",
            "Job already finished",
            f"Job {job_id} is {job.state}; only queued or running jobs can be cancelled.",
            state=job.state,
        )
    return JobPublic.of(job)


@router.post(
    "/{job_id}/retry", operation_id="jobs_retry", status_code=202, response_model=JobPublic
)
def retry_job(
    *, job_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> JobPublic:
    """Send a failed or cancelled job again: it resumes from what it had completed (after a
    full disk was freed, say). Anything else answers 409."""
    job = jobs.get_job(session, project.id, job_id)
    send = jobs.retry(session, job, settings.max_active_jobs_per_project)
    session.commit()
    send()
    session.refresh(job)
    return JobPublic.of(job)


@router.get(
    "/{job_id}/events",
    operation_id="jobs_events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def job_events(*, job_id: str, session: SessionDep, project: CurrentProject) -> StreamingResponse:
    """Server-sent events: one `progress` event per change, then `end` at a final state."""
    jobs.get_job(session, project.id, job_id)
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
    return ArtifactsPublic(data=JobPublic.of(jobs.get_job(session, project.id, job_id)).artifacts)


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
    """Download one artifact by name. Some are drawn after the job's result is stored (a
    scan's plots; their size is null until then): one asked for before that is drawn first."""
    job = jobs.get_job(session, project.id, job_id)
    if any(a["name"] == name and a.get("size") is None for a in job.artifacts or []):
        session.commit()  # end this request's read: the drawing writes in sessions of its own
        draw_deferred(job.id)
        session.refresh(job)
    for artifact in job.artifacts or []:
        if artifact["name"] == name and Path(artifact["path"]).is_file():
            return FileResponse(artifact["path"], media_type=artifact["media_type"], filename=name)
    raise not_found("Artifact", name)
