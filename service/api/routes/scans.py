"""Scans: profile a corpus against skill versions. Create starts a job; GET carries the
frequency report once it succeeded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import skill_store
from service.api.deps import CurrentProject, IdempotencyKey, PageDep, SessionDep, SettingsDep
from service.api.errors import not_found
from service.api.idempotency import create_once
from service.api.pagination import paginate
from service.api.routes.corpora import get_corpus
from service.api.routes.jobs import start_job
from service.auth import ProjectRef
from service.ids import new_id
from service.models import Job, JobState, Scan
from service.schemas import JobPublic, ScanCreate, ScanPublic, ScansPublic, SkillRef

router = APIRouter(prefix="/v1/scans", tags=["scans"])


def public(session: Session, scan: Scan) -> ScanPublic:
    job = session.get(Job, scan.job_id)
    assert job is not None
    names = {ref["id"]: ref.get("name", "") for ref in scan.skills}
    return ScanPublic(
        id=scan.id,
        corpus_id=scan.corpus_id,
        batch_tokens=scan.batch_tokens,
        on_bad_record=scan.options.get("on_bad_record", "fail"),
        created_at=scan.created_at,
        skills=[
            SkillRef(id=r["id"], version=r["version"], name=names[r["id"]]) for r in scan.skills
        ],
        job=JobPublic.of(job),
        report=job.result if job.state == JobState.succeeded.value else None,
    )


def skill_refs(session: Session, project: ProjectRef, skill_ids: list[str]) -> list[dict[str, Any]]:
    """The latest version of each skill, pinned: later edits never change this scan."""
    refs = []
    for skill_id in dict.fromkeys(skill_ids):
        skill = skill_store.get_skill(session, project.id, skill_id)
        if skill is None:
            raise not_found("Skill", skill_id)
        refs.append({"id": skill.id, "version": skill.latest_version, "name": skill.name})
    return refs


@router.post("", operation_id="scans_create", status_code=202, response_model=ScanPublic)
def create_scan(
    *,
    body: ScanCreate,
    request: Request,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Start a scan of a corpus for the given skills (their current versions)."""

    def create() -> tuple[dict[str, Any], Callable[[], None]]:
        corpus = get_corpus(session, project, body.corpus_id)
        refs = skill_refs(session, project, body.skill_ids)
        scan = Scan(
            id=new_id("scan"),
            project_id=project.id,
            corpus_id=corpus.id,
            skills=refs,
            batch_tokens=body.batch_tokens,
            options={"on_bad_record": body.on_bad_record},
            job_id="",
        )
        job, after_commit = start_job(
            session,
            project_id=project.id,
            kind="scan",
            params={"scan_id": scan.id},
            settings=settings,
        )
        scan.job_id = job.id
        session.add(scan)
        session.flush()
        return public(session, scan).model_dump(mode="json"), after_commit

    return create_once(
        session,
        request,
        body,
        project_id=project.id,
        key=idempotency_key,
        status_code=202,
        create=create,
    )


@router.get("", operation_id="scans_list", response_model=ScansPublic)
def list_scans(*, session: SessionDep, project: CurrentProject, page: PageDep) -> ScansPublic:
    """This project's scans, newest first."""
    stmt = select(Scan).where(Scan.project_id == project.id)
    return ScansPublic.model_validate(
        paginate(session, stmt, Scan.id, page, lambda scan: public(session, scan))
    )


@router.get("/{scan_id}", operation_id="scans_retrieve", response_model=ScanPublic)
def read_scan(*, scan_id: str, session: SessionDep, project: CurrentProject) -> ScanPublic:
    """One scan, with its job and, once done, its report."""
    scan = session.get(Scan, scan_id)
    if scan is None or scan.project_id != project.id:
        raise not_found("Scan", scan_id)
    return public(session, scan)
