"""Verifications: train small models on mixtures across sizes and seeds, and judge whether
they kept each skill. Create starts a job on the `training` queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.deps import CurrentProject, IdempotencyKey, PageDep, SessionDep, SettingsDep
from service.api.errors import Problem, not_found
from service.api.idempotency import create_once
from service.api.pagination import paginate
from service.api.routes.jobs import start_job
from service.api.routes.mixtures import get_mixture
from service.auth import ProjectRef
from service.ids import new_id
from service.models import (
    Job,
    JobState,
    Mixture,
    Scan,
    Verification,
    VerificationRun,
)
from service.schemas import (
    JobPublic,
    RunPublic,
    SkillRef,
    VerificationCreate,
    VerificationPublic,
    VerificationsPublic,
)
from service.settings import Settings
from training.sizes import SIZES

router = APIRouter(prefix="/v1/verifications", tags=["verifications"])
GEOMETRY = ("batch_tokens", "seq_len")


def public(session: Session, ver: Verification) -> VerificationPublic:
    job = session.get(Job, ver.job_id)
    assert job is not None
    runs = session.scalars(
        select(VerificationRun)
        .where(VerificationRun.verification_id == ver.id)
        .order_by(VerificationRun.id)
    )
    return VerificationPublic(
        id=ver.id,
        arms=ver.arms,
        params=ver.params,
        created_at=ver.created_at,
        skills=[SkillRef(**ref) for ref in ver.skills],
        job=JobPublic.of(job),
        runs=[
            RunPublic(arm=r.arm, size=r.size, seed=r.seed, state=r.state, summary=r.summary)
            for r in runs
        ],
        report=job.result if job.state == JobState.succeeded.value else None,
    )


def arm_mixtures(session: Session, project: ProjectRef, arms: dict[str, str]) -> dict[str, Mixture]:
    """The given arms' mixtures, checked comparable; a mixture still building is fine (the
    job waits for it), a failed or dry-run one is refused."""
    found = {arm: get_mixture(session, project, mid) for arm, mid in arms.items() if mid != "auto"}
    if not found:
        raise Problem(
            422,
            "no-arms",
            "No mixture to verify",
            "Give at least one arm as a mixture id; only a baseline may be 'auto'.",
        )
    for arm, mixture in found.items():
        if mixture.dry_run or mixture.job_id is None:
            raise Problem(
                422,
                "mixture-not-built",
                "Dry-run mixture",
                f"Arm {arm!r}: mixture {mixture.id} was a dry run; create it without "
                "dry_run to build it.",
            )
        job = session.get(Job, mixture.job_id)
        if job is not None and job.state in (JobState.failed.value, JobState.cancelled.value):
            raise Problem(
                422,
                "mixture-failed",
                "Mixture did not build",
                f"Arm {arm!r}: mixture {mixture.id} {job.state}: {job.error or ''}",
            )
    (first, ref), *rest = found.items()
    for arm, mixture in rest:
        if mixture.corpus_id != ref.corpus_id:
            raise Problem(
                422,
                "arms-mismatch",
                "Arms from different corpora",
                f"Arm {arm!r} was built from corpus {mixture.corpus_id}, arm {first!r} "
                f"from {ref.corpus_id}: compare mixtures of one corpus.",
            )
        for key in GEOMETRY:
            if mixture.dosing[key] != ref.dosing[key]:
                raise Problem(
                    422,
                    "arms-mismatch",
                    "Arms with different batch shapes",
                    f"Arm {arm!r} has {key}={mixture.dosing[key]}, arm {first!r} "
                    f"{ref.dosing[key]}: the same token budget must mean the same "
                    "steps.",
                )
    return found


def baseline_mixture(
    session: Session, project: ProjectRef, like: Mixture, settings: Settings
) -> tuple[Mixture, Callable[[], None]]:
    """The corpus at its natural frequency, packed like `like` (same scan, shape, seed)."""
    dosing = {**like.dosing, "skills": {}}
    mixture = Mixture(
        id=new_id("mix"),
        project_id=project.id,
        corpus_id=like.corpus_id,
        scan_id=like.scan_id,
        dosing=dosing,
        dry_run=False,
        plan={"baseline_of": like.id},
        output_uri="",
    )
    mixture.output_uri = str(settings.resolved_data_dir / "mixtures" / mixture.id)
    job, after_commit = start_job(
        session,
        project_id=project.id,
        kind="mixture",
        params={"mixture_id": mixture.id},
        settings=settings,
    )
    mixture.job_id = job.id
    session.add(mixture)
    return mixture, after_commit


def skill_refs(session: Session, mixture: Mixture, skill_ids: list[str]) -> list[dict[str, Any]]:
    """The skills at the versions the arms' scan measured."""
    scan = session.get(Scan, mixture.scan_id)
    assert scan is not None
    scanned = {ref["id"]: ref for ref in scan.skills}
    missing = [sid for sid in skill_ids if sid not in scanned]
    if missing:
        raise Problem(
            422,
            "skill-not-scanned",
            "Skill not in the arms' scan",
            f"Scan {scan.id} of the arms' corpus did not measure {', '.join(missing)}.",
        )
    return [scanned[sid] for sid in dict.fromkeys(skill_ids)]


@router.post(
    "", operation_id="verifications_create", status_code=202, response_model=VerificationPublic
)
def create_verification(
    *,
    body: VerificationCreate,
    request: Request,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Start training every (arm, size, seed) and judging the skills."""
    unknown = sorted(set(body.sizes) - set(SIZES))
    if unknown:
        raise Problem(
            422,
            "validation-error",
            "Unknown model size",
            f"Unknown size(s) {', '.join(unknown)}; sizes are {', '.join(SIZES)}.",
        )
    if len(set(body.seeds)) != len(body.seeds):
        raise Problem(422, "validation-error", "Repeated seeds", "Give each seed once.")

    def create() -> tuple[dict[str, Any], Callable[[], None]]:
        found = arm_mixtures(session, project, body.arms)
        hooks: list[Callable[[], None]] = []
        arms = dict(body.arms)
        for arm, mid in body.arms.items():
            if mid == "auto":
                mixture, hook = baseline_mixture(
                    session, project, next(iter(found.values())), settings
                )
                arms[arm], found[arm] = mixture.id, mixture
                hooks.append(hook)
        refs = skill_refs(session, next(iter(found.values())), body.skill_ids)
        params = body.model_dump(exclude={"arms", "skill_ids"})
        ver = Verification(
            id=new_id("ver"),
            project_id=project.id,
            arms=arms,
            skills=refs,
            params=params,
            job_id="",
        )
        job, hook = start_job(
            session,
            project_id=project.id,
            kind="verification",
            params={"verification_id": ver.id},
            settings=settings,
        )
        ver.job_id = job.id
        session.add(ver)
        session.flush()
        for arm in arms:
            for size in body.sizes:
                for seed in body.seeds:
                    session.add(
                        VerificationRun(verification_id=ver.id, arm=arm, size=size, seed=seed)
                    )
        session.flush()
        hooks.append(hook)

        def enqueue_all() -> None:
            for enqueue in hooks:
                enqueue()

        return public(session, ver).model_dump(mode="json"), enqueue_all

    return create_once(
        session,
        request,
        body,
        project_id=project.id,
        key=idempotency_key,
        status_code=202,
        create=create,
    )


@router.get("", operation_id="verifications_list", response_model=VerificationsPublic)
def list_verifications(
    *, session: SessionDep, project: CurrentProject, page: PageDep
) -> VerificationsPublic:
    """This project's verifications, newest first."""
    stmt = select(Verification).where(Verification.project_id == project.id)
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
    ver = session.get(Verification, verification_id)
    if ver is None or ver.project_id != project.id:
        raise not_found("Verification", verification_id)
    return public(session, ver)
