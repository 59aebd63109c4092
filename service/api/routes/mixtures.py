"""Mixtures: reweighted and spaced datasets. Create plans at once (warnings, or a 422 when
the target cannot be met) and, unless `dry_run`, starts the build job."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from curation.mixture import DosingPlan, PlanError, plan_mixture
from curation.sources.paths import SourceRejected, ensure_local_inside
from service.api.deps import CurrentProject, IdempotencyKey, PageDep, SessionDep, SettingsDep
from service.api.errors import Problem, not_found
from service.api.idempotency import create_once
from service.api.pagination import paginate
from service.api.routes.corpora import get_corpus, service_owned
from service.api.routes.jobs import start_job
from service.auth import ProjectRef
from service.handlers.scan import load_specs
from service.ids import new_id
from service.models import Job, JobState, Mixture, Scan
from service.schemas import JobPublic, MixtureCreate, MixturePublic, MixturesPublic
from service.settings import Settings

router = APIRouter(prefix="/v1/mixtures", tags=["mixtures"])


def public(session: Session, mixture: Mixture) -> MixturePublic:
    job = session.get(Job, mixture.job_id) if mixture.job_id else None
    result = (job.result or {}) if job and job.state == JobState.succeeded.value else {}
    return MixturePublic(
        id=mixture.id,
        corpus_id=mixture.corpus_id,
        scan_id=mixture.scan_id,
        dry_run=mixture.dry_run,
        created_at=mixture.created_at,
        output={"uri": mixture.output_uri, "format": mixture.dosing.get("format")},
        plan=mixture.plan,
        warnings=mixture.plan.get("warnings", []),
        job=JobPublic.of(job) if job else None,
        manifest=result.get("manifest"),
        audit=result.get("audit"),
    )


def get_mixture(session: Session, project: ProjectRef, mixture_id: str) -> Mixture:
    mixture = session.get(Mixture, mixture_id)
    if mixture is None or mixture.project_id != project.id:
        raise not_found("Mixture", mixture_id)
    return mixture


def succeeded_scan(session: Session, project: ProjectRef, scan_id: str, corpus_id: str) -> Scan:
    scan = session.get(Scan, scan_id)
    if scan is None or scan.project_id != project.id:
        raise not_found("Scan", scan_id)
    if scan.corpus_id != corpus_id:
        raise Problem(
            422,
            "scan-mismatch",
            "Scan of another corpus",
            f"Scan {scan_id} profiled corpus {scan.corpus_id}, not {corpus_id}.",
        )
    job = session.get(Job, scan.job_id)
    if job is None or job.state != JobState.succeeded.value:
        state = job.state if job else "missing"
        raise Problem(
            409,
            "scan-not-ready",
            "Scan not finished",
            f"Scan {scan_id} is {state}; a mixture is planned from a succeeded scan.",
            state=state,
        )
    return scan


def output_folder(uri: str | None, mixture_id: str, settings: Settings) -> str:
    folder = uri or str(settings.resolved_data_dir / "mixtures" / mixture_id)
    try:
        if "://" in folder or "\x00" in folder or not os.path.isabs(folder):
            raise SourceRejected(f"{folder!r}: a mixture is written to an absolute local path")
        ensure_local_inside(folder, [str(r) for r in settings.effective_allowed_roots])
        if all(service_owned(folder, settings, own=own) for own in ("mixtures", "corpora")):
            data = settings.resolved_data_dir
            raise SourceRejected(
                f"{folder} is in the service's data directory ({data}), which holds every "
                f"project's job files; there, a mixture goes under {data / 'mixtures'} "
                f"or {data / 'corpora'}"
            )
    except SourceRejected as exc:
        raise Problem(422, "source-rejected", "Output location refused", str(exc)) from None
    if os.path.isdir(folder) and os.listdir(folder):
        raise Problem(
            409,
            "output-exists",
            "Output folder not empty",
            f"{folder} already holds files; choose a new output.uri.",
        )
    return folder


def dosing_of(body: MixtureCreate) -> DosingPlan:
    return DosingPlan(
        skills=body.plan,
        batch_tokens=body.batch_tokens,
        seq_len=body.seq_len,
        seed=body.seed,
        max_batches=body.max_batches,
        format=body.output.format,
    )


def plan_for(session: Session, scan: Scan, dosing: DosingPlan) -> dict[str, Any]:
    """Plan against the scan's report and its pinned skill versions; 422 if infeasible."""
    unknown = sorted(set(dosing.skills) - {ref["id"] for ref in scan.skills})
    if unknown:
        raise Problem(
            422,
            "skill-not-scanned",
            "Skill not in the scan",
            f"The plan doses {', '.join(unknown)}, which scan {scan.id} did not "
            "measure; scan the corpus for them first.",
        )
    job = session.get(Job, scan.job_id)
    assert job is not None and job.result is not None
    try:
        return plan_mixture(job.result, load_specs(scan.skills), dosing).to_dict()
    except PlanError as exc:
        raise Problem(422, "plan-infeasible", "The plan cannot be built", str(exc)) from None


@router.post(
    "",
    operation_id="mixtures_create",
    status_code=202,
    response_model=MixturePublic,
    responses={201: {"model": MixturePublic, "description": "dry run: the plan"}},
)
def create_mixture(
    *,
    body: MixtureCreate,
    request: Request,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Plan a mixture and (unless dry_run) start building it."""

    def create() -> tuple[dict[str, Any], Callable[[], None] | None]:
        corpus = get_corpus(session, project, body.corpus_id)
        scan = succeeded_scan(session, project, body.scan_id, corpus.id)
        dosing = dosing_of(body)
        plan = plan_for(session, scan, dosing)
        mixture = Mixture(
            id=new_id("mix"),
            project_id=project.id,
            corpus_id=corpus.id,
            scan_id=scan.id,
            dosing=dosing.model_dump(mode="json"),
            plan=plan,
            dry_run=body.dry_run,
            output_uri="",
        )
        mixture.output_uri = output_folder(body.output.uri, mixture.id, settings)
        after_commit = None
        if not body.dry_run:
            job, after_commit = start_job(
                session,
                project_id=project.id,
                kind="mixture",
                params={"mixture_id": mixture.id},
                settings=settings,
            )
            mixture.job_id = job.id
        session.add(mixture)
        session.flush()
        return public(session, mixture).model_dump(mode="json"), after_commit

    return create_once(
        session,
        request,
        body,
        project_id=project.id,
        key=idempotency_key,
        status_code=201 if body.dry_run else 202,
        create=create,
    )


@router.get("", operation_id="mixtures_list", response_model=MixturesPublic)
def list_mixtures(*, session: SessionDep, project: CurrentProject, page: PageDep) -> MixturesPublic:
    """This project's mixtures, newest first."""
    stmt = select(Mixture).where(Mixture.project_id == project.id)
    return MixturesPublic.model_validate(
        paginate(session, stmt, Mixture.id, page, lambda m: public(session, m))
    )


@router.get("/{mixture_id}", operation_id="mixtures_retrieve", response_model=MixturePublic)
def read_mixture(*, mixture_id: str, session: SessionDep, project: CurrentProject) -> MixturePublic:
    """One mixture: its plan, job, and once built its manifest and audit."""
    return public(session, get_mixture(session, project, mixture_id))
