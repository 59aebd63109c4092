"""Job records and the runner, in process: leases fence attempts, the cap ends retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from service.auth import create_key
from service.cli.embedded import refresh_settings
from service.db import session_scope
from service.models import Job, JobState
from service.settings import get_settings
from service.store import jobs
from service.worker import runner, sweeper


def make_job(params: dict | None = None, max_attempts: int = 3) -> str:
    with session_scope() as session:
        project, _ = create_key(session, "p")
        job = jobs.create_job(
            session,
            project_id=project.id,
            kind="sleep",
            queue="curation",
            params=params or {},
            max_attempts=max_attempts,
        )
        return job.id


def load(job_id: str) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def expire_lease(job_id: str) -> None:
    from datetime import timedelta

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.lease_expires_at is not None
        job.lease_expires_at = job.lease_expires_at - timedelta(hours=1)


def test_a_claimed_job_cannot_be_claimed_again_until_its_lease_expires(sqlite_db: str) -> None:
    job_id = make_job()
    with session_scope() as s:
        assert jobs.claim(s, job_id, "w1", 60)
        assert not jobs.claim(s, job_id, "w2", 60)
    expire_lease(job_id)
    with session_scope() as s:
        assert jobs.claim(s, job_id, "w2", 60)
        # The first worker lost its lease: its writes are refused.
        assert not jobs.report_progress(s, job_id, "w1", 0.5, "late", 60)
        assert not jobs.finish(s, job_id, "w1", state=JobState.succeeded)
        assert jobs.finish(s, job_id, "w2", state=JobState.succeeded, result={"ok": 1})
    job = load(job_id)
    assert (job.state, job.attempts, job.result) == ("succeeded", 2, {"ok": 1})


def test_runner_runs_a_job_and_records_result_and_artifact(sqlite_db: str) -> None:
    job_id = make_job({"seconds": 0.2, "steps": 2})
    assert runner.execute(job_id) == "succeeded"
    job = load(job_id)
    assert job.state == "succeeded" and job.progress == 1.0 and job.attempts == 1
    assert job.result == {"slept_seconds": 0.2, "steps": 2}
    [artifact] = job.artifacts
    assert json.loads(Path(artifact["path"]).read_text()) == job.result
    # A redelivered copy of a finished job does nothing.
    assert runner.execute(job_id) == "skipped (succeeded)"
    assert load(job_id).attempts == 1


def test_a_handler_error_fails_the_job_once_with_its_message(sqlite_db: str) -> None:
    job_id = make_job({"fail": "disk on fire"})
    assert runner.execute(job_id) == "failed"
    job = load(job_id)
    assert job.state == "failed" and job.attempts == 1
    assert job.error == "RuntimeError: disk on fire"


def test_cancel_stops_a_running_job(sqlite_db: str) -> None:
    job_id = make_job({"seconds": 5, "steps": 50})
    outcome: list[str] = []
    t = threading.Thread(target=lambda: outcome.append(runner.execute(job_id)))
    t.start()
    deadline = time.monotonic() + 10
    while load(job_id).state != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None and jobs.cancel(s, job)
    t.join(10)
    assert outcome == ["interrupted"]
    assert load(job_id).state == "cancelled"


def test_jobs_whose_messages_were_lost_are_sent_again(sqlite_db: str) -> None:
    """A queued job's message, or the one sent again for an expired lease, may be lost
    (a broker without its data): sent again when it is old, or at once when the broker
    says it lost everything sent before some time."""
    from service.models import utcnow

    queued, expired = make_job(), make_job()
    with session_scope() as s:
        jobs.mark_enqueued(s, queued)
        assert jobs.claim(s, expired, "dead-worker", 60)
    expire_lease(expired)
    with session_scope() as s:
        jobs.mark_enqueued(s, expired)  # the sweeper sent it again after the lease ran out

    def resend(**kwargs: object) -> set[str]:
        with session_scope() as s:
            return {job.id for job in jobs.stranded_jobs(s, **kwargs)[0]}  # type: ignore[arg-type]

    assert resend(requeue_queued_after=600) == set()
    assert resend(requeue_queued_after=600, messages_lost_before=utcnow()) == {queued, expired}
    time.sleep(0.01)
    assert resend(requeue_queued_after=0.001) == {queued, expired}


def test_a_job_never_sent_is_sent_after_a_short_grace_not_the_requeue_delay(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker was down when the job was created, so the API could not send it: the
    sweeper sends it UNSENT_GRACE_SECONDS after creation, not requeue_queued_after."""
    from datetime import timedelta

    from service.models import utcnow

    unsent, sent = make_job(), make_job()
    with session_scope() as s:
        jobs.mark_enqueued(s, sent)

    def resend_at(seconds_later: float) -> set[str]:
        later = utcnow() + timedelta(seconds=seconds_later)
        monkeypatch.setattr(jobs, "utcnow", lambda: later)
        with session_scope() as s:
            return {job.id for job in jobs.stranded_jobs(s, requeue_queued_after=600)[0]}

    assert resend_at(0) == set()  # its creator may still be sending it
    assert resend_at(jobs.UNSENT_GRACE_SECONDS + 1) == {unsent}
    assert resend_at(601) == {unsent, sent}


def test_sweeper_resends_expired_jobs_and_fails_exhausted_ones(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(sweeper, "enqueue", lambda job_id, queue: sent.append(job_id))
    retry, exhausted = make_job(max_attempts=3), make_job(max_attempts=1)
    with session_scope() as s:
        assert jobs.claim(s, retry, "dead-worker", 60)
        assert jobs.claim(s, exhausted, "dead-worker", 60)
    expire_lease(retry)
    expire_lease(exhausted)
    assert sweeper.sweep_once(get_settings()) == {"resent": 1, "failed": 1}
    assert sent == [retry]
    # Sent once per lost lease, not on every sweep.
    assert sweeper.sweep_once(get_settings()) == {"resent": 0, "failed": 0}
    failed = load(exhausted)
    assert failed.state == "failed" and "lost 1 time(s) (max_attempts=1)" in (failed.error or "")
    assert runner.execute(retry) == "succeeded"
    assert load(retry).attempts == 2


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    """The embedded SQLite database, then the session's PostgreSQL one."""
    return str(request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db"))


def dropped_connection(statement: str) -> OperationalError:
    """What SQLAlchemy raises when the server goes away mid-statement."""
    orig = Exception("server closed the connection unexpectedly")
    return OperationalError(statement, {}, orig, connection_invalidated=True)


def failing_writes(
    monkeypatch: pytest.MonkeyPatch,
    marker: str,
    times: int,
    error: Callable[[str], Exception] = dropped_connection,
    before_raising: Callable[[], None] = lambda: None,
) -> list[float]:
    """The next `times` statements whose SQL contains `marker` raise `error` (in any
    thread); returns when each failed."""
    real = Session.execute
    failed: list[float] = []

    def execute(self: Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        sql = str(statement)
        if marker in sql and len(failed) < times:
            failed.append(time.monotonic())
            before_raising()
            raise error(sql)
        return real(self, statement, *args, **kwargs)

    monkeypatch.setattr(Session, "execute", execute)
    return failed


PROGRESS_WRITE = "UPDATE jobs SET progress="
LEASE_RENEWAL = "UPDATE jobs SET lease_expires_at="
FINAL_WRITE = "finished_at=:finished_at"  # finish() (cancel() too, not run here)


@pytest.mark.parametrize("statement", [PROGRESS_WRITE, FINAL_WRITE], ids=["progress", "final"])
def test_a_brief_database_error_in_a_progress_or_final_write_is_retried(
    database: str, monkeypatch: pytest.MonkeyPatch, statement: str
) -> None:
    job_id = make_job({"seconds": 0, "steps": 2})
    failed = failing_writes(monkeypatch, statement, times=runner.WRITE_ATTEMPTS - 1)
    assert runner.execute(job_id) == "succeeded"
    assert len(failed) == runner.WRITE_ATTEMPTS - 1
    first, second = failed[1] - failed[0], failed[2] - failed[1]  # the waits: 0.25 s, 0.5 s
    assert first >= runner.WRITE_BACKOFF_SECONDS and second >= 2 * runner.WRITE_BACKOFF_SECONDS
    job = load(job_id)
    assert (job.state, job.attempts, job.progress, job.error) == ("succeeded", 1, 1.0, None)


def test_a_progress_write_error_that_is_not_transient_fails_the_job_at_once(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job({"seconds": 0, "steps": 2})
    failed = failing_writes(
        monkeypatch,
        PROGRESS_WRITE,
        times=100,
        error=lambda sql: IntegrityError(sql, {}, Exception("not a blip")),  # a bug
    )
    assert runner.execute(job_id) == "failed"
    assert len(failed) == 1
    job = load(job_id)
    assert job.state == "failed" and job.attempts == 1
    assert (job.error or "").startswith("IntegrityError")


def test_a_database_outage_that_outlasts_the_retries_gives_the_attempt_up_not_the_job(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is away longer than a progress write keeps trying, and back by the time
    the handler's error reaches the runner: the job is not recorded `failed` (which would
    end it for a blip, benchmarks/soak.py found); the attempt ends without a final write and
    the job runs again once its lease has run out."""
    monkeypatch.setattr(runner, "WRITE_BACKOFF_SECONDS", 0.01)
    job_id = make_job({"seconds": 0, "steps": 2})
    failed = failing_writes(monkeypatch, PROGRESS_WRITE, times=runner.WRITE_ATTEMPTS)
    assert runner.execute(job_id) == "interrupted"
    assert len(failed) == runner.WRITE_ATTEMPTS
    job = load(job_id)
    assert (job.state, job.attempts, job.error) == ("running", 1, None)

    expire_lease(job_id)  # the sweeper would send it again now
    assert runner.execute(job_id) == "succeeded"
    job = load(job_id)
    assert (job.state, job.attempts, job.error) == ("succeeded", 2, None)


def test_a_lease_lost_while_a_write_is_retried_still_stops_the_job(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job({"seconds": 0, "steps": 2})

    def another_worker_takes_the_job() -> None:  # this one looked dead meanwhile
        expire_lease(job_id)
        with session_scope() as s:
            assert jobs.claim(s, job_id, "other-worker", 60)

    failing_writes(monkeypatch, PROGRESS_WRITE, 1, before_raising=another_worker_takes_the_job)
    assert runner.execute(job_id) == "interrupted"
    job = load(job_id)  # the retried write was fenced off: the job is the other attempt's
    assert (job.state, job.lease_owner, job.attempts, job.progress) == (
        "running",
        "other-worker",
        2,
        0.0,
    )


def test_a_brief_database_error_in_a_lease_renewal_is_retried_at_once(
    sqlite_db: str, env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a full beat (a third of the lease) later, when the lease may have run out."""
    env.setenv("SKILLMIX_JOB_LEASE_SECONDS", "3")
    refresh_settings()
    job_id = make_job({"seconds": 1.6, "steps": 1})  # one beat, at 1 s
    failed = failing_writes(monkeypatch, LEASE_RENEWAL, times=1)
    renewals: list[float] = []
    real_renew = jobs.renew_lease
    monkeypatch.setattr(
        jobs, "renew_lease", lambda *a: renewals.append(time.monotonic()) or real_renew(*a)
    )
    assert runner.execute(job_id) == "succeeded"
    assert len(failed) == 1 and len(renewals) == 2
    assert renewals[1] - renewals[0] < 1.0 / 2
