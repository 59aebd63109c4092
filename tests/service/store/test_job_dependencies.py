"""Jobs that wait for other jobs (a verification for its arms' mixtures): queued and unsent
until what they need has succeeded, then sent by the worker that finished the last one (or
by the sweeper); failed, naming the job, when one of them fails or is cancelled."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from service.auth import create_key
from service.db import session_scope
from service.models import Job, JobState
from service.settings import get_settings
from service.store import jobs
from service.worker import runner, sweeper


def start(session: Session, project_id: str, params: dict, after: list[Job] = ()) -> Job:
    job, send = jobs.start_job(
        session,
        project_id=project_id,
        kind="sleep",
        params=params,
        max_attempts=3,
        max_active=0,
        after=after,
    )
    session.commit()
    send()
    return job


def state(job_id: str) -> tuple[str, bool, str | None]:
    """(state, sent to the broker, error)"""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.state, job.enqueued_at is not None, job.error


@pytest.fixture(params=["sqlite_db", "pg_db"])
def db(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(request.param)


def two_needs_and_a_waiter(fail_second: str | None = None) -> tuple[str, str, str]:
    with session_scope() as session:
        project, _ = create_key(session, "p")
        first = start(session, project.id, {"seconds": 0})
        second = start(session, project.id, {"seconds": 0, "fail": fail_second})
        waiter = start(session, project.id, {"seconds": 0}, after=[first, second])
        assert waiter.progress_message == (
            f"waiting for sleep job {first.id}, sleep job {second.id}"
        )
        return first.id, second.id, waiter.id


def test_a_waiting_job_is_sent_when_the_last_job_it_needs_succeeds(db: str) -> None:
    first, second, waiter = two_needs_and_a_waiter()
    assert state(waiter) == ("queued", False, None)
    assert runner.execute(first) == "succeeded"
    assert state(waiter) == ("queued", False, None)  # still needs the second
    # Neither the sweeper's resend of unsent jobs nor its settling sends it early.
    with session_scope() as session:
        resend, _ = jobs.stranded_jobs(session, requeue_queued_after=0.0)
    assert waiter not in {job.id for job in resend}
    sweeper.sweep_once(get_settings())
    assert state(waiter) == ("queued", False, None)
    assert runner.execute(second) == "succeeded"
    assert state(waiter) == ("queued", True, None)
    assert runner.execute(waiter) == "succeeded"


def test_a_failed_need_fails_the_waiting_job_with_the_reason(db: str) -> None:
    _, second, waiter = two_needs_and_a_waiter(fail_second="disk on fire")
    assert runner.execute(second) == "failed"
    assert state(waiter) == (
        "failed",
        False,
        f"it needed sleep job {second}, which failed: RuntimeError: disk on fire",
    )


def test_cancelling_a_need_fails_the_waiting_job(db: str) -> None:
    first, _, waiter = two_needs_and_a_waiter()
    with session_scope() as session:
        job = session.get(Job, first)
        assert job is not None and jobs.cancel(session, job)
    assert state(waiter) == ("failed", False, f"it needed sleep job {first}, which cancelled")


def test_the_sweeper_sends_a_job_whose_needs_ended_unnoticed(db: str) -> None:
    """The worker that finished the last need died before sending the waiter (or the
    dependency was added while the need was finishing): the next sweep sends it."""
    first, second, waiter = two_needs_and_a_waiter()
    with session_scope() as session:
        for job_id in (first, second):
            job = session.get(Job, job_id)
            assert job is not None
            job.state = JobState.succeeded.value
    assert state(waiter) == ("queued", False, None)
    sweeper.sweep_once(get_settings())
    assert state(waiter) == ("queued", True, None)


def test_a_job_after_succeeded_jobs_is_sent_at_once(db: str) -> None:
    with session_scope() as session:
        project, _ = create_key(session, "p")
        first = start(session, project.id, {"seconds": 0})
    assert runner.execute(first.id) == "succeeded"
    with session_scope() as session:
        done = session.get(Job, first.id)
        assert done is not None
        waiter = start(session, project.id, {"seconds": 0}, after=[done])
        assert waiter.progress_message == ""
    assert state(waiter.id) == ("queued", True, None)


def test_a_running_job_waits_again_for_the_jobs_it_starts(db: str) -> None:
    """An adaptive study's next look: the job, held by its worker, starts a job and waits
    for it (jobs.wait_again, fenced on the lease); it is sent again once that succeeds."""
    with session_scope() as session:
        project, _ = create_key(session, "p")
        waiter = start(session, project.id, {"seconds": 0})
        assert jobs.claim(session, waiter.id, "me", 60)
        need, send = jobs.start_job(
            session, project_id=project.id, kind="sleep", params={"seconds": 0},
            max_attempts=3, max_active=0,
        )  # fmt: skip
        assert not jobs.wait_again(session, waiter.id, "a lost attempt", [need], "look 2")
        assert jobs.wait_again(session, waiter.id, "me", [need], "look 2")
        session.commit()
        send()
        waiter_id, need_id = waiter.id, need.id
    assert state(waiter_id) == ("queued", False, None)
    with session_scope() as session:
        job = session.get(Job, waiter_id)
        assert job is not None and (job.attempts, job.lease_owner) == (0, None)
        assert job.progress_message == "look 2"
    sweeper.sweep_once(get_settings())  # waiting: not sent early
    assert state(waiter_id) == ("queued", False, None)
    assert runner.execute(need_id) == "succeeded"
    assert state(waiter_id) == ("queued", True, None)
    assert runner.execute(waiter_id) == "succeeded"


def test_a_result_holding_infinities_is_stored_with_nulls(db: str) -> None:
    """A study whose ED is never reached has an infinite estimate: the job still succeeds
    and its result is JSON both databases take (PostgreSQL refuses Infinity and NaN)."""
    with session_scope() as session:
        project, _ = create_key(session, "p")
        job = start(session, project.id, {"seconds": 0})
        assert jobs.claim(session, job.id, "me", 60)
        result = {"ed80": {"value": float("inf"), "ci95": [1.0, float("nan")]}, "n": 3}
        assert jobs.finish(session, job.id, "me", state=JobState.succeeded, result=result)
    with session_scope() as session:
        stored = session.get(Job, job.id)
        assert stored is not None and stored.state == "succeeded"
        assert stored.result == {"ed80": {"value": None, "ci95": [1.0, None]}, "n": 3}
