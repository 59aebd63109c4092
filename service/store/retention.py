"""Data retention: what deleting a job-backed resource (a scan, a mixture, a verification)
removes, and when it is refused. A resource kind plugs in by listing its jobs, the jobs
that depend on it and any folder the service chose for it (a study would list its
verifications' jobs), then calling `delete_files` and marking its row deleted.

The rules:

- Refused, 409 `resource-busy` naming each job and its state, while one of the resource's
  own jobs or a job that depends on it is queued or running: cancel those first
  (`POST /v1/jobs/{id}/cancel`); a delete never cancels work by itself. A job cancelled
  while it ran may keep its worker busy until the worker's next progress write: for one
  lease (`job_lease_seconds`) after such a cancel the answer is 409 `job-stopping`, with
  Retry-After, so no worker writes into a folder after it was removed.
- Removed, in the request, before the row is marked deleted: each job's artifact folder
  (`artifacts_dir/<job id>`) and work folder (`work_dir/<job id>`), and folders the service
  chose itself under its data dir (a mixture's default output). A folder is only ever the
  service folder joined with a plain id read from a row of the caller's project; a symbolic
  link, at the top or anywhere inside, is unlinked, never followed. A removal that fails
  answers 500 `files-not-removed` and deletes nothing (the DELETE can be sent again: what
  is already gone is skipped).
- Kept: the job rows (state, timings, result, with no artifacts listed), and whatever the
  user chose to place elsewhere (a mixture's own `output.uri`).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Job, JobDependency, JobState, utcnow
from service.problems import Problem
from service.settings import Settings
from service.store.jobs import ACTIVE

log = logging.getLogger("skillmix.retention")

PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def waiting_for(session: Session, jobs: Sequence[Job]) -> list[Job]:
    """Active jobs that wait for any of `jobs` (`job_dependencies`)."""
    if not jobs:
        return []
    return list(
        session.scalars(
            select(Job)
            .join(JobDependency, JobDependency.job_id == Job.id)
            .where(JobDependency.needs_job_id.in_([j.id for j in jobs]), Job.state.in_(ACTIVE))
        )
    )


def refuse_while_busy(
    what: str,
    ident: str,
    own: Sequence[Job],
    dependents: Sequence[Job],
    settings: Settings,
) -> None:
    """409 while a job of the resource, or one that depends on it, is active or stopping."""
    busy = {job.id: job for job in [*own, *dependents] if job.state in ACTIVE}
    if busy:
        names = ", ".join(f"{job.kind} job {job.id} ({job.state})" for job in busy.values())
        raise Problem(
            409,
            "resource-busy",
            f"{what} in use",
            f"{what} {ident} cannot be deleted while {names} "
            f"{'is' if len(busy) == 1 else 'are'} queued or running; cancel "
            f"{'it' if len(busy) == 1 else 'them'} first (POST /v1/jobs/{{id}}/cancel).",
            jobs=[{"id": job.id, "kind": job.kind, "state": job.state} for job in busy.values()],
        )
    wait = max((_stopping_for(job, settings) for job in own), default=0.0)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise Problem(
            409,
            "job-stopping",
            "Job still stopping",
            f"{what} {ident}'s job was cancelled while it ran; its worker stops at its next "
            f"progress write. Retry in {seconds} s.",
            headers={"Retry-After": str(seconds), "X-Should-Retry": "true"},
            retry_after=seconds,
        )


def _stopping_for(job: Job, settings: Settings) -> float:
    """Seconds a job cancelled while running may still have a worker writing its files."""
    if job.state != JobState.cancelled.value or job.started_at is None or not job.finished_at:
        return 0.0
    until = job.finished_at + timedelta(seconds=settings.job_lease_seconds)
    return max(0.0, (until - utcnow()).total_seconds())


def service_folder(base: Path, name: str) -> Path:
    """`base/name` for a plain id `name` (letters, digits, `_`, `-`): never a path that
    climbs out of `base` or reaches another folder of it."""
    if not PLAIN_ID.fullmatch(name):
        raise ValueError(f"not a plain id: {name!r}")
    return base / name


def job_folders(settings: Settings, job: Job) -> list[Path]:
    """The job's artifact and work folders."""
    return [
        service_folder(settings.artifacts_dir, job.id),
        service_folder(settings.work_dir, job.id),
    ]


def _remove(path: Path) -> None:
    """Remove a file or folder without following links: a link is unlinked, not its
    target; `shutil.rmtree` unlinks the links inside a folder (its fd-based walk is safe
    against links swapped in meanwhile)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path)


def delete_files(
    settings: Settings,
    what: str,
    ident: str,
    project_id: str,
    jobs: Sequence[Job],
    folders: Sequence[Path] = (),
) -> None:
    """Remove the jobs' folders and `folders`, then forget the jobs' artifacts. 500 naming
    the path when one cannot be removed (the caller then commits nothing)."""
    assert all(job.project_id == project_id for job in jobs), (ident, project_id)
    paths = [path for job in jobs for path in job_folders(settings, job)] + list(folders)
    for path in paths:
        try:
            _remove(path)
        except OSError as exc:
            log.error("could not remove %s of %s %s: %s", path, what.lower(), ident, exc)
            raise Problem(
                500,
                "files-not-removed",
                "Files could not be removed",
                f"{what} {ident} was not deleted: removing its files failed ({exc}); "
                "some may already be gone. Send the DELETE again once the cause is fixed.",
            ) from None
    for job in jobs:
        job.artifacts = []
