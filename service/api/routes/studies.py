"""Studies: the smallest dose, the widest spacing at which a model size keeps a skill.
Create builds one mixture per point of the design and one verification over them (child
resources with `study_id`), then a `study` job analyses the runs; `apply` builds the
production mixture at the recommended dose."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.api.deps import CurrentProject, PageDep, SessionDep
from service.api.idempotency import CreateOnceDep
from service.api.pagination import paginate
from service.api.routes.mixtures import public as mixture_public
from service.api.schemas import (
    JobPublic,
    MixturePublic,
    SkillRef,
    StudiesPublic,
    StudyApply,
    StudyCreate,
    StudyPoint,
    StudyPublic,
)
from service.models import JobState, Study
from service.store import studies

router = APIRouter(prefix="/v1/studies", tags=["studies"])


def public(session: Session, study: Study) -> StudyPublic:
    job = studies.job_of(session, study)
    return StudyPublic(
        id=study.id,
        kind=study.kind,
        params=study.params,
        skills=[SkillRef(**ref) for ref in study.skills],
        points={arm: StudyPoint(**point) for arm, point in study.points.items()},
        verification_id=study.verification_id,
        looks=study.looks,
        created_at=study.created_at,
        job=JobPublic.of(job),
        report=job.result if job.state == JobState.succeeded.value else None,
    )


@router.post("", operation_id="studies_create", status_code=202, response_model=StudyPublic)
def create_study(*, body: StudyCreate, create: CreateOnceDep) -> JSONResponse:
    """Start a study: its point mixtures, their verification, and the analysis after it."""
    studies.design_points(  # 422 early
        body.kind, body.design.model_dump(exclude_none=True), body.seeds_per_point, body.target_p
    )
    return create(
        body,
        lambda: studies.start_study(
            create.session,
            create.project_id,
            create.settings,
            params=body.model_dump(mode="json", exclude_none=False),
        ),
        present=public,
        status_code=202,
    )


@router.get("", operation_id="studies_list", response_model=StudiesPublic)
def list_studies(*, session: SessionDep, project: CurrentProject, page: PageDep) -> StudiesPublic:
    """This project's studies, newest first."""
    return StudiesPublic.model_validate(
        paginate(session, studies.query(project.id), Study.id, page, lambda s: public(session, s))
    )


@router.get("/{study_id}", operation_id="studies_retrieve", response_model=StudyPublic)
def read_study(*, study_id: str, session: SessionDep, project: CurrentProject) -> StudyPublic:
    """One study: its points and, once analysed, the fits and recommendations."""
    return public(session, studies.get_study(session, project.id, study_id))


@router.post(
    "/{study_id}/apply",
    operation_id="studies_apply",
    status_code=202,
    response_model=MixturePublic,
)
def apply_study(*, study_id: str, body: StudyApply, create: CreateOnceDep) -> JSONResponse:
    """Build the production mixture for one size at the study's recommended dose (by
    default the ED's upper 95% bound) on the corpus you name."""
    return create(
        body,
        lambda: studies.recommended_mixture(
            create.session,
            create.project_id,
            create.settings,
            study_id=study_id,
            size=body.size,
            corpus_id=body.corpus_id,
            scan_id=body.scan_id,
            output_uri=body.output.uri,
            output_format=body.output.format,
            margin=body.margin,
        ),
        present=mixture_public,
        status_code=202,
    )
