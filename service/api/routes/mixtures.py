"""Mixtures: reweighted and spaced datasets. Create plans at once (warnings, or a 422 when
the target cannot be met) and, unless `dry_run`, starts the build job."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.api.deps import CurrentProject, PageDep, SessionDep, SettingsDep
from service.api.idempotency import CreateOnceDep
from service.api.pagination import paginate
from service.api.schemas import (
    JobPublic,
    MixtureCreate,
    MixturePublic,
    MixturesPublic,
    problem_responses,
)
from service.models import JobState, Mixture
from service.store import mixtures

router = APIRouter(prefix="/v1/mixtures", tags=["mixtures"])


def public(session: Session, mixture: Mixture) -> MixturePublic:
    job = mixtures.job_of(session, mixture)
    result = (job.result or {}) if job and job.state == JobState.succeeded.value else {}
    return MixturePublic(
        id=mixture.id,
        corpus_id=mixture.corpus_id,
        scan_id=mixture.scan_id,
        dry_run=mixture.dry_run,
        created_at=mixture.created_at,
        output={
            "uri": mixture.output_uri,
            "format": mixture.dosing.get("format"),
            "exports": (job.params.get("exports") if job else None) or [],
        },
        plan=mixture.plan,
        warnings=mixture.plan.get("warnings", []),
        job=JobPublic.of(job) if job else None,
        manifest=result.get("manifest"),
        audit=result.get("audit"),
        study_id=mixture.study_id,
    )


@router.post(
    "",
    operation_id="mixtures_create",
    status_code=202,
    response_model=MixturePublic,
    responses={201: {"model": MixturePublic, "description": "dry run: the plan"}},
)
def create_mixture(*, body: MixtureCreate, create: CreateOnceDep) -> JSONResponse:
    """Plan a mixture and (unless dry_run) start building it."""
    return create(
        body,
        lambda: mixtures.start_mixture(
            create.session,
            create.project_id,
            create.settings,
            corpus_id=body.corpus_id,
            scan_id=body.scan_id,
            dosing=body.dosing(),
            output_uri=body.output.uri,
            dry_run=body.dry_run,
            exports=list(body.output.exports),
        ),
        present=public,
        status_code=201 if body.dry_run else 202,
    )


@router.get("", operation_id="mixtures_list", response_model=MixturesPublic)
def list_mixtures(*, session: SessionDep, project: CurrentProject, page: PageDep) -> MixturesPublic:
    """This project's mixtures, newest first."""
    stmt = mixtures.query(project.id)
    return MixturesPublic.model_validate(
        paginate(session, stmt, Mixture.id, page, lambda m: public(session, m))
    )


@router.get("/{mixture_id}", operation_id="mixtures_retrieve", response_model=MixturePublic)
def read_mixture(*, mixture_id: str, session: SessionDep, project: CurrentProject) -> MixturePublic:
    """One mixture: its plan, job, and once built its manifest and audit."""
    return public(session, mixtures.get_mixture(session, project.id, mixture_id))


@router.delete(
    "/{mixture_id}",
    operation_id="mixtures_delete",
    status_code=204,
    response_class=Response,
    responses=problem_responses(500),
)
def delete_mixture(
    *, mixture_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> Response:
    """Delete a mixture and its files (not an output.uri you chose); 409 while in use."""
    mixtures.delete_mixture(session, project.id, mixture_id, settings)
    session.commit()
    return Response(status_code=204)
