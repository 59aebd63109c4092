"""Scans: profile a corpus against skill versions. Create starts a job; GET carries the
frequency report once it succeeded."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.api.deps import CurrentProject, PageDep, SessionDep, SettingsDep
from service.api.idempotency import CreateOnceDep
from service.api.pagination import paginate
from service.api.schemas import (
    JobPublic,
    ScanCreate,
    ScanPublic,
    ScansPublic,
    SkillRef,
    problem_responses,
)
from service.models import JobState, Scan
from service.store import scans

router = APIRouter(prefix="/v1/scans", tags=["scans"])


def public(session: Session, scan: Scan) -> ScanPublic:
    job = scans.job_of(session, scan)
    names = {ref["id"]: ref.get("name", "") for ref in scan.skills}
    return ScanPublic(
        id=scan.id,
        corpus_id=scan.corpus_id,
        batch_tokens=scan.batch_tokens,
        on_bad_record=scan.options.get("on_bad_record", "fail"),
        tokenizer=scan.options.get("tokenizer"),
        created_at=scan.created_at,
        skills=[
            SkillRef(id=r["id"], version=r["version"], name=names[r["id"]]) for r in scan.skills
        ],
        job=JobPublic.of(job),
        report=job.result if job.state == JobState.succeeded.value else None,
    )


@router.post("", operation_id="scans_create", status_code=202, response_model=ScanPublic)
def create_scan(*, body: ScanCreate, create: CreateOnceDep) -> JSONResponse:
    """Start a scan of a corpus for the given skills (their current versions)."""
    return create(
        body,
        lambda: scans.start_scan(
            create.session, create.project_id, create.settings, **body.model_dump()
        ),
        present=public,
        status_code=202,
    )


@router.get("", operation_id="scans_list", response_model=ScansPublic)
def list_scans(*, session: SessionDep, project: CurrentProject, page: PageDep) -> ScansPublic:
    """This project's scans, newest first."""
    stmt = scans.query(project.id)
    return ScansPublic.model_validate(
        paginate(session, stmt, Scan.id, page, lambda scan: public(session, scan))
    )


@router.get("/{scan_id}", operation_id="scans_retrieve", response_model=ScanPublic)
def read_scan(*, scan_id: str, session: SessionDep, project: CurrentProject) -> ScanPublic:
    """One scan, with its job and, once done, its report."""
    return public(session, scans.get_scan(session, project.id, scan_id))


@router.delete(
    "/{scan_id}",
    operation_id="scans_delete",
    status_code=204,
    response_class=Response,
    responses=problem_responses(500),
)
def delete_scan(
    *, scan_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> Response:
    """Delete a scan and its job's files; 409 while it or a mixture build from it runs."""
    scans.delete_scan(session, project.id, scan_id, settings)
    session.commit()
    return Response(status_code=204)
