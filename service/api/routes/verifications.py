"""Verifications: train small models on mixtures across sizes and seeds, and judge whether
they kept each skill. Create starts a job on the `training` queue, sent once the arms'
mixtures are built."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.api.deps import CurrentProject, PageDep, SessionDep, SettingsDep
from service.api.idempotency import CreateOnceDep
from service.api.pagination import paginate
from service.api.schemas import (
    JobPublic,
    Progress,
    RunPublic,
    SkillRef,
    TrainingRunPublic,
    VerificationCreate,
    VerificationPublic,
    VerificationsPublic,
    problem_responses,
)
from service.models import JobState, TrainingRun, Verification
from service.store import training_runs, verifications

router = APIRouter(prefix="/v1/verifications", tags=["verifications"])


def unit_public(unit: TrainingRun) -> TrainingRunPublic:
    return TrainingRunPublic(
        id=unit.id,
        state=unit.state,  # type: ignore[arg-type]
        seeds=unit.seeds,
        look=unit.look,
        progress=Progress(fraction=unit.progress, message=unit.progress_message),
        attempts=unit.attempts,
        max_attempts=unit.max_attempts,
        error=unit.error,
        started_at=unit.started_at,
        finished_at=unit.finished_at,
    )


def public(session: Session, ver: Verification) -> VerificationPublic:
    job = verifications.job_of(session, ver)
    runs = verifications.runs_of(session, ver.id)
    units = {u.id: u for u in training_runs.units_of(session, job.id)}
    return VerificationPublic(
        id=ver.id,
        arms=ver.arms,
        params=ver.params,
        created_at=ver.created_at,
        skills=[SkillRef(**ref) for ref in ver.skills],
        job=JobPublic.of(job),
        runs=[
            RunPublic(
                arm=r.arm,
                size=r.size,
                seed=r.seed,
                state=r.state,
                summary=r.summary,
                unit=unit_public(units[r.training_run_id]) if r.training_run_id in units else None,
            )
            for r in runs
        ],
        report=job.result if job.state == JobState.succeeded.value else None,
        study_id=ver.study_id,
    )


@router.post(
    "", operation_id="verifications_create", status_code=202, response_model=VerificationPublic
)
def create_verification(*, body: VerificationCreate, create: CreateOnceDep) -> JSONResponse:
    """Start training every (arm, size, seed) and judging the skills."""
    verifications.check_grid(body.sizes, body.seeds)
    return create(
        body,
        lambda: verifications.start_verification(
            create.session,
            create.project_id,
            create.settings,
            arms=body.arms,
            skill_ids=body.skill_ids,
            params=body.model_dump(exclude={"arms", "skill_ids"}),
        ),
        present=public,
        status_code=202,
    )


@router.get("", operation_id="verifications_list", response_model=VerificationsPublic)
def list_verifications(
    *, session: SessionDep, project: CurrentProject, page: PageDep
) -> VerificationsPublic:
    """This project's verifications, newest first."""
    stmt = verifications.query(project.id)
    return VerificationsPublic.model_validate(
        paginate(session, stmt, Verification.id, page, lambda v: public(session, v))
    )


@router.get(
    "/{verification_id}", operation_id="verifications_retrieve", response_model=VerificationPublic
)
def read_verification(
    *, verification_id: str, session: SessionDep, project: CurrentProject
) -> VerificationPublic:
    """One verification: its runs as they finish, then the report and verdicts."""
    return public(session, verifications.get_verification(session, project.id, verification_id))


@router.delete(
    "/{verification_id}",
    operation_id="verifications_delete",
    status_code=204,
    response_class=Response,
    responses=problem_responses(500),
)
def delete_verification(
    *, verification_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> Response:
    """Delete a verification and its job's files; 409 while its job is queued or running."""
    verifications.delete_verification(session, project.id, verification_id, settings)
    session.commit()
    return Response(status_code=204)
