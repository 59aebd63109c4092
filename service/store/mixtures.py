"""Mixtures: a plan made at create time from a succeeded scan (warnings, or a 422 when the
target cannot be met) and, unless a dry run, a `mixture` job that builds it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from curation.mixture import DosingPlan, PlanError, plan_mixture
from curation.mixture.remote import remote_entries
from curation.sources.paths import (
    SourceRejected,
    ensure_local_inside,
    ensure_remote_inside,
    is_inside,
)
from service.ids import new_id
from service.models import Job, JobState, Mixture, Scan, Verification, utcnow
from service.problems import Problem, not_found
from service.settings import Settings
from service.store import corpora, retention, scans, skills, tokenizers
from service.store.jobs import ACTIVE, AfterCommit, start_job


def query(project_id: str) -> Select[Mixture]:
    """The project's mixtures (not deleted), for a page."""
    return select(Mixture).where(Mixture.project_id == project_id, Mixture.deleted_at.is_(None))


def get_mixture(
    session: Session, project_id: str, mixture_id: str, *, lock: bool | dict[str, bool] = False
) -> Mixture:
    """The project's mixture (not deleted); 404 otherwise. `lock` as in `scans.get_scan`:
    a delete and a verification of the mixture take turns."""
    if lock:
        mixture = session.get(Mixture, mixture_id, with_for_update=lock, populate_existing=True)
    else:
        mixture = session.get(Mixture, mixture_id)
    if mixture is None or mixture.project_id != project_id or mixture.deleted_at is not None:
        raise not_found("Mixture", mixture_id)
    return mixture


def job_of(session: Session, mixture: Mixture) -> Job | None:
    """The build job (None for a dry run)."""
    return session.get(Job, mixture.job_id) if mixture.job_id else None


def output_folder(session: Session, uri: str | None, mixture_id: str, settings: Settings) -> str:
    """Where the mixture is written: the given absolute local folder (inside an allowed
    root, empty, not in another project's part of the data dir, not claimed by another
    mixture) or a new one under the data dir. 422 or 409 with the reason otherwise."""
    folder = uri or str(default_output(settings, mixture_id))
    if "://" in folder:
        return _remote_output(session, folder, settings)
    try:
        if "\x00" in folder or not os.path.isabs(folder):
            raise SourceRejected(f"{folder!r}: a mixture is written to an absolute local path")
        ensure_local_inside(folder, [str(r) for r in settings.effective_allowed_roots])
        if all(corpora.service_owned(folder, settings, own=own) for own in ("mixtures", "corpora")):
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
    if claimed(session, folder):
        raise Problem(
            409,
            "output-claimed",
            "Output folder claimed",
            f"Another mixture (of this or another project) is written to {folder}, or "
            "inside it, or around it; choose a new output.uri.",
        )
    return folder


def _remote_output(session: Session, uri: str, settings: Settings) -> str:
    """An object-storage prefix (s3://bucket/prefix...): of an allowed protocol, under an
    allowed root of it, empty, and not claimed by another mixture. 422 or 409 otherwise."""
    try:
        url = ensure_remote_inside(
            uri, [str(r) for r in settings.effective_allowed_roots], set(settings.allowed_protocols)
        )
    except SourceRejected as exc:
        raise Problem(422, "source-rejected", "Output location refused", str(exc)) from None
    try:
        entries = remote_entries(url)
    except ImportError as exc:
        raise Problem(
            422, "source-rejected", "Output location refused",
            f"{uri}: this server cannot write there ({exc}); install its fsspec backend "
            "(pip install 'skillmix[objectstore]')",
        ) from None  # fmt: skip
    if entries:
        raise Problem(
            409, "output-exists", "Output folder not empty",
            f"{url} already holds objects; choose a new output.uri.",
        )  # fmt: skip
    if claimed(session, url):
        raise Problem(
            409, "output-claimed", "Output folder claimed",
            f"Another mixture (of this or another project) is written to {url}, or inside it, "
            "or around it; choose a new output.uri.",
        )  # fmt: skip
    return url


def _normalised(location: str) -> str:
    return location.rstrip("/") if "://" in location else os.path.realpath(location)


def claimed(session: Session, folder: str) -> bool:
    """Whether a live mixture (any project's, not a dry run, not deleted) writes to this
    folder, inside it or around it. An empty folder is not enough: a queued build has not
    made its folder yet, and two builds in one folder would write over each other (or one
    project's into another's default output, `<data>/mixtures/<id>`, before it exists).
    Reads every live mixture's output: fine at this scale; an index on a normalized path
    would be the next step."""
    mine = _normalised(folder)
    for other in session.scalars(
        select(Mixture.output_uri).where(
            Mixture.deleted_at.is_(None), Mixture.dry_run.is_(False), Mixture.output_uri != ""
        )
    ):
        theirs = _normalised(other)
        if ("://" in mine) != ("://" in theirs):
            continue
        if is_inside(mine, theirs) or is_inside(theirs, mine):
            return True
    return False


def plan_for(
    session: Session, scan: Scan, dosing: DosingPlan, settings: Settings
) -> dict[str, Any]:
    """Plan against the scan's report and its pinned skill versions; 422 if infeasible (or
    if the tokenizer is refused: outside the allowed roots, unreadable, without EOS)."""
    tokenizer = tokenizers.checked(dosing.tokenizer, settings)
    unknown = sorted(set(dosing.skills) - {ref["id"] for ref in scan.skills})
    if unknown:
        raise Problem(
            422,
            "skill-not-scanned",
            "Skill not in the scan",
            f"The plan doses {', '.join(unknown)}, which scan {scan.id} did not "
            "measure; scan the corpus for them first.",
        )
    report = scans.job_of(session, scan).result
    assert report is not None
    try:
        specs = skills.load_specs(session, scan.skills)
        return plan_mixture(report, specs, dosing, tokenizer=tokenizer).to_dict()
    except PlanError as exc:
        raise Problem(422, "plan-infeasible", "The plan cannot be built", str(exc)) from None


def start_mixture(
    session: Session,
    project_id: str,
    settings: Settings,
    *,
    corpus_id: str,
    scan_id: str,
    dosing: DosingPlan,
    output_uri: str | None,
    dry_run: bool,
    exports: list[str] | None = None,
) -> tuple[Mixture, AfterCommit | None]:
    """Plan a mixture and, unless `dry_run`, add its build job (with the `exports` to write:
    kept in the job's params)."""
    corpus = corpora.get_corpus(session, project_id, corpus_id)
    scan = scans.succeeded_scan(session, project_id, scan_id, corpus.id)
    mixture = Mixture(
        id=new_id("mix"),
        project_id=project_id,
        corpus_id=corpus.id,
        scan_id=scan.id,
        dosing=dosing.model_dump(mode="json"),
        plan=plan_for(session, scan, dosing, settings),
        dry_run=dry_run,
        output_uri="",
    )
    mixture.output_uri = output_folder(session, output_uri, mixture.id, settings)
    after_commit = None
    if not dry_run:
        after_commit = _start_build(session, mixture, settings, exports or [])
    session.add(mixture)
    session.flush()
    return mixture, after_commit


def start_baseline(
    session: Session, like: Mixture, settings: Settings
) -> tuple[Mixture, AfterCommit]:
    """The corpus at its natural frequency, packed like `like` (same scan, shape, seed)."""
    mixture = Mixture(
        id=new_id("mix"),
        project_id=like.project_id,
        corpus_id=like.corpus_id,
        scan_id=like.scan_id,
        dosing={**like.dosing, "skills": {}},
        dry_run=False,
        plan={"baseline_of": like.id},
        output_uri="",
    )
    mixture.output_uri = str(default_output(settings, mixture.id))
    after_commit = _start_build(session, mixture, settings)
    session.add(mixture)
    return mixture, after_commit


def _start_build(
    session: Session, mixture: Mixture, settings: Settings, exports: list[str] | None = None
) -> AfterCommit:
    params: dict[str, Any] = {"mixture_id": mixture.id}
    if exports:
        params["exports"] = list(exports)
    job, after_commit = start_job(
        session,
        project_id=mixture.project_id,
        kind="mixture",
        params=params,
        max_attempts=settings.max_attempts,
        max_active=settings.max_active_jobs_per_project,
    )
    mixture.job_id = job.id
    return after_commit


def build_failed(job: Job | None) -> bool:
    return job is not None and job.state in (JobState.failed.value, JobState.cancelled.value)


def default_output(settings: Settings, mixture_id: str) -> Path:
    """The folder the service chooses when a create gives no `output.uri`."""
    return retention.service_folder(settings.resolved_data_dir / "mixtures", mixture_id)


def delete_mixture(session: Session, project_id: str, mixture_id: str, settings: Settings) -> None:
    """Delete a mixture: its build job's artifacts and work folder, its output when the
    service chose the folder (an `output.uri` the user gave is theirs and kept), then the row
    (see `service.store.retention`). 409 while its build, or a verification that trains on
    it, is queued or running; finished verifications keep their reports."""
    mixture = get_mixture(session, project_id, mixture_id, lock=True)
    job = job_of(session, mixture)
    own = [job] if job else []
    # Active jobs are few (a per-project cap): the arms are matched here, not in JSON SQL.
    verifying = session.execute(
        select(Verification.arms, Job)
        .join(Job, Job.id == Verification.job_id)
        .where(Verification.project_id == project_id, Job.state.in_(ACTIVE))
    ).all()
    uses = [job for arms, job in verifying if mixture.id in arms.values()]
    dependents = [*uses, *retention.waiting_for(session, own)]
    retention.refuse_while_busy("Mixture", mixture.id, own, dependents, settings)
    output = default_output(settings, mixture.id)
    folders = [output] if os.path.normpath(mixture.output_uri) == str(output) else []
    retention.delete_files(settings, "Mixture", mixture.id, project_id, own, folders)
    mixture.deleted_at = utcnow()
