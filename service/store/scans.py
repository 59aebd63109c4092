"""Scans: a corpus profiled against pinned skill versions by a `scan` job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from curation.mixture.tokenizer import TokenizerSpec
from curation.scan_plots import SCAN_PLOTS
from service.ids import new_id
from service.models import Job, JobState, Mixture, Scan, utcnow
from service.problems import Problem, not_found
from service.settings import Settings
from service.store import corpora, retention, skills, tokenizers
from service.store.jobs import ACTIVE, AfterCommit, start_job


def query(project_id: str) -> Select[Scan]:
    """The project's scans (not deleted), for a page."""
    return select(Scan).where(Scan.project_id == project_id, Scan.deleted_at.is_(None))


def get_scan(
    session: Session, project_id: str, scan_id: str, *, lock: bool | dict[str, bool] = False
) -> Scan:
    """The project's scan (not deleted); 404 otherwise. `lock`: SELECT ... FOR UPDATE (True)
    or FOR SHARE (`{"read": True}`) on PostgreSQL, so a delete and a mixture planned from
    the scan take turns."""
    if lock:
        scan = session.get(Scan, scan_id, with_for_update=lock, populate_existing=True)
    else:
        scan = session.get(Scan, scan_id)
    if scan is None or scan.project_id != project_id or scan.deleted_at is not None:
        raise not_found("Scan", scan_id)
    return scan


def job_of(session: Session, scan: Scan) -> Job:
    job = session.get(Job, scan.job_id)
    assert job is not None, scan.id
    return job


def pinned_skills(session: Session, project_id: str, skill_ids: list[str]) -> list[dict[str, Any]]:
    """The latest version of each skill, pinned: later edits never change this scan."""
    refs = []
    for skill_id in dict.fromkeys(skill_ids):
        skill = skills.get_skill(session, project_id, skill_id)
        if skill is None:
            raise not_found("Skill", skill_id)
        refs.append({"id": skill.id, "version": skill.latest_version, "name": skill.name})
    return refs


def start_scan(
    session: Session,
    project_id: str,
    settings: Settings,
    *,
    corpus_id: str,
    skill_ids: list[str],
    batch_tokens: int,
    on_bad_record: str,
    tokenizer: dict[str, Any] | None = None,
) -> tuple[Scan, AfterCommit]:
    """Add a scan of the corpus for the skills' current versions, and its queued job.
    `tokenizer`: what a token is in the report (bytes, or an hf tokenizer file, checked)."""
    corpus = corpora.get_corpus(session, project_id, corpus_id)
    spec = TokenizerSpec.model_validate(tokenizer or {})
    tokenizers.checked(spec, settings)
    options: dict[str, Any] = {"on_bad_record": on_bad_record}
    if spec.kind != "bytes":
        options["tokenizer"] = spec.model_dump(exclude_none=True)
    scan = Scan(
        id=new_id("scan"),
        project_id=project_id,
        corpus_id=corpus.id,
        skills=pinned_skills(session, project_id, skill_ids),
        batch_tokens=batch_tokens,
        options=options,
        job_id="",
    )
    job, after_commit = start_job(
        session,
        project_id=project_id,
        kind="scan",
        params={"scan_id": scan.id},
        max_attempts=settings.max_attempts,
        max_active=settings.max_active_jobs_per_project,
    )
    scan.job_id = job.id
    session.add(scan)
    session.flush()
    return scan, after_commit


def succeeded_scan(session: Session, project_id: str, scan_id: str, corpus_id: str) -> Scan:
    """A scan of `corpus_id` whose job succeeded (what a mixture is planned from), locked
    against a delete until the mixture is added."""
    scan = get_scan(session, project_id, scan_id, lock={"read": True})
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


def delete_scan(session: Session, project_id: str, scan_id: str, settings: Settings) -> None:
    """Delete a scan: its job's artifacts and work folder, then the row (see
    `service.store.retention`). 409 while its job, or the build of a mixture planned from
    it, is queued or running; mixtures already planned from it keep their plans."""
    scan = get_scan(session, project_id, scan_id, lock=True)
    job = job_of(session, scan)
    builds = session.scalars(
        select(Job)
        .join(Mixture, Mixture.job_id == Job.id)
        .where(Mixture.scan_id == scan.id, Job.state.in_(ACTIVE))
    ).all()
    dependents = [*builds, *retention.waiting_for(session, [job])]
    retention.refuse_while_busy("Scan", scan.id, [job], dependents, settings)
    retention.delete_files(settings, "Scan", scan.id, project_id, [job])
    scan.deleted_at = utcnow()


def deferred_plots(report_dir: Path) -> dict[str, Path]:
    """The plots a scan job lists without drawing them (`add_artifact(deferred=True)`):
    its report is stored first, the plots after it (`service.artifacts`)."""
    return {name: report_dir / name for name in SCAN_PLOTS}
