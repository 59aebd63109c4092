"""A verification's training units (service/store/training_runs.py), without training: the
same claim, lease and fencing rules as jobs; the job handed over to them and taken back
exactly once when the last one ends; a cancel reaching every unit; the sweeper's part.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from service.auth import create_key
from service.db import session_scope
from service.models import Job, JobState, TrainingRun, Verification, VerificationRun, utcnow
from service.settings import get_settings
from service.store import jobs, training_runs
from service.worker import runner, sweeper

LEASE = 30.0


@pytest.fixture(params=["sqlite_db", "pg_db"])
def db(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(request.param)


def verification(arms: tuple[str, ...] = ("a", "b"), seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    """A running verification job (claimed by `planner`) with its units planned, one per
    (arm, seed); returns the job id."""
    with session_scope() as session:
        project, _ = create_key(session, "p")
        job = jobs.create_job(
            session,
            project_id=project.id,
            kind="verification",
            queue="training",
            params={},
            max_attempts=3,
        )
        ver = Verification(
            project_id=project.id,
            job_id=job.id,
            arms=dict.fromkeys(arms, "mix"),
            skills=[],
            params={"sizes": ["nano"], "seeds": list(seeds)},
        )
        session.add(ver)
        session.flush()
        for arm in arms:
            for seed in seeds:
                session.add(
                    VerificationRun(verification_id=ver.id, arm=arm, size="nano", seed=seed)
                )
        job.params = {"verification_id": ver.id}
        session.commit()
        assert jobs.claim(session, job.id, "planner", LEASE)
        groups = [(arm, "nano", [seed]) for seed in seeds for arm in arms]
        queued = training_runs.plan(session, job, ver.id, groups, max_attempts=2)
        assert len(queued) == len(groups)
        # Planning again (a second attempt of the job) adds nothing.
        assert len(training_runs.plan(session, job, ver.id, groups, max_attempts=2)) == len(groups)
        runs = session.query(VerificationRun).filter_by(verification_id=ver.id).all()
        assert {r.training_run_id for r in runs} == {u.id for u in queued}
        return job.id


def units(job_id: str) -> list[TrainingRun]:
    with session_scope() as session:
        found = training_runs.units_of(session, job_id)
        session.expunge_all()
        return found


def job_row(job_id: str) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def detach(job_id: str) -> None:
    with session_scope() as session:
        assert training_runs.detach(session, job_id, "planner", "training")
        # Detached, the job is nobody's: not claimable, and no lease to expire.
        assert not jobs.claim(session, job_id, "another", LEASE)
        resend, to_fail = jobs.stranded_jobs(session, requeue_queued_after=0.0)
        assert job_id not in {j.id for j in resend + to_fail}


def expire(unit_id: str) -> None:
    with session_scope() as session:
        session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == unit_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def test_a_unit_is_claimed_by_one_worker_at_a_time_and_fenced(db: str) -> None:
    job_id = verification()
    detach(job_id)
    unit = units(job_id)[0].id
    with session_scope() as session:
        assert jobs.claim(session, unit, "w1", LEASE, TrainingRun)
        assert not jobs.claim(session, unit, "w2", LEASE, TrainingRun)  # held
        assert training_runs.report_progress(session, unit, job_id, "w1", 0.5, "half", LEASE)
        assert not training_runs.report_progress(session, unit, job_id, "w2", 0.9, "no", LEASE)
    # The job's progress is the mean of its six units'.
    assert job_row(job_id).progress == pytest.approx(0.5 / 6)
    assert job_row(job_id).lease_owner is None
    expire(unit)  # w1 was lost
    with session_scope() as session:
        resend, to_fail = training_runs.stranded(session, requeue_queued_after=600)
        assert [u.id for u in resend] == [unit] and to_fail == []
        assert jobs.claim(session, unit, "w2", LEASE, TrainingRun)
        # The lost worker's writes are refused from now on: progress, result.
        assert not training_runs.report_progress(session, unit, job_id, "w1", 0.7, "", LEASE)
        assert not jobs.finish(session, unit, "w1", state=JobState.succeeded, table=TrainingRun)
        assert jobs.finish(session, unit, "w2", state=JobState.succeeded, table=TrainingRun)
    (done,) = [u for u in units(job_id) if u.id == unit]
    assert (done.state, done.attempts, done.progress) == ("succeeded", 2, 1.0)
    # Lost on every attempt: the unit fails, and its job with it.
    other = units(job_id)[1].id
    for owner in ("x1", "x2"):
        with session_scope() as session:
            assert jobs.claim(session, other, owner, LEASE, TrainingRun)
        expire(other)
    with session_scope() as session:
        assert not jobs.claim(session, other, "x3", LEASE, TrainingRun)
    assert sweeper.sweep_once(get_settings())["failed"] == 1
    job = job_row(job_id)
    assert job.state == "failed" and other in (job.error or "") and "lost 2 time" in job.error
    assert {u.state for u in units(job_id) if u.id not in (unit, other)} == {"cancelled"}


def test_a_job_waiting_for_the_verification_hears_how_far_its_training_got(db: str) -> None:
    job_id = verification()
    with session_scope() as session:
        waiter, _ = jobs.start_job(
            session, project_id=job_row(job_id).project_id, kind="sleep",
            params={"seconds": 0}, max_attempts=1, max_active=0, after=[job_row(job_id)],
        )  # fmt: skip
        session.commit()
        waiter_id = waiter.id
    own = f"waiting for verification job {job_id}"
    assert job_row(waiter_id).progress_message == own
    detach(job_id)
    unit, other = (u.id for u in units(job_id)[:2])
    with session_scope() as session:
        assert jobs.claim(session, unit, "w1", LEASE, TrainingRun)
        assert jobs.claim(session, other, "w2", LEASE, TrainingRun)
        assert training_runs.report_progress(session, unit, job_id, "w1", 0.6, "a", LEASE)
    assert job_row(waiter_id).progress_message == f"{own} · verification at 10%"
    with session_scope() as session:  # a later report replaces the note, not the message
        assert training_runs.report_progress(session, other, job_id, "w2", 1.0, "b", LEASE)
    waiting = job_row(waiter_id)
    assert waiting.progress_message == f"{own} · verification at 27%"
    assert (waiting.state, waiting.progress) == ("queued", 0.0)


def succeed(unit_id: str) -> None:
    with session_scope() as session:
        assert jobs.claim(session, unit_id, f"w-{unit_id}", LEASE, TrainingRun)
        assert jobs.finish(
            session, unit_id, f"w-{unit_id}", state=JobState.succeeded, table=TrainingRun
        )


def test_the_job_is_taken_back_once_when_its_last_unit_ends(db: str) -> None:
    job_id = verification()
    all_units = [u.id for u in units(job_id)]
    for unit in all_units[:-1]:
        succeed(unit)
    with session_scope() as session:
        # Not detached yet (its planning attempt holds it), then one unit still open.
        assert not training_runs.take_finish(session, job_id, "early", LEASE)
    detach(job_id)
    with session_scope() as session:
        assert not training_runs.take_finish(session, job_id, "early", LEASE)
    succeed(all_units[-1])
    # Eight workers whose units ended together all try: exactly one takes the job.
    barrier, taken = threading.Barrier(8), []

    def finisher(n: int) -> None:
        with session_scope() as session:
            barrier.wait()
            if training_runs.take_finish(session, job_id, f"f{n}", LEASE):
                taken.append(n)

    threads = [threading.Thread(target=finisher, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 1
    job = job_row(job_id)
    assert (job.state, job.lease_owner) == ("running", f"f{taken[0]}")
    # The sweeper leaves a job someone finishes alone ...
    with session_scope() as session:
        assert training_runs.settle_detached(session) == []
        assert jobs.finish(session, job_id, f"f{taken[0]}", state=JobState.succeeded)
    assert job_row(job_id).state == "succeeded"


def test_the_sweeper_sends_a_job_whose_finisher_died_before_taking_it(db: str) -> None:
    job_id = verification(arms=("a",), seeds=(0,))
    detach(job_id)
    (unit,) = units(job_id)
    succeed(unit.id)  # and its worker died before take_finish
    sweeper.sweep_once(get_settings())
    job = job_row(job_id)
    assert (job.state, job.enqueued_at is not None) == ("queued", True)
    with session_scope() as session:
        assert training_runs.settle_detached(session) == []  # once


def test_cancel_reaches_every_unit(db: str) -> None:
    job_id = verification()
    detach(job_id)
    first, *rest = [u.id for u in units(job_id)]
    with session_scope() as session:
        assert jobs.claim(session, first, "w1", LEASE, TrainingRun)
        job = session.get(Job, job_id)
        assert job is not None and jobs.cancel(session, job)
        # The running unit's worker learns at its next progress write; queued ones never
        # start, and nothing sends them again.
        assert not training_runs.report_progress(session, first, job_id, "w1", 0.3, "", LEASE)
        for unit in rest:
            assert not jobs.claim(session, unit, "w2", LEASE, TrainingRun)
        resend, _ = training_runs.stranded(session, requeue_queued_after=0.0)
        assert resend == []
    assert {u.state for u in units(job_id)} == {"cancelled"}
    assert runner.execute_unit(rest[0]) == "skipped (cancelled)"
    # A retry of the job queues them again (they resume from their checkpoints).
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        jobs.retry(session, job, max_active=0)
        session.commit()
        ver_id = job.params["verification_id"]
        groups = [(u.arm, u.size, u.seeds) for u in training_runs.units_of(session, job_id)]
        queued = training_runs.plan(session, job, ver_id, groups, max_attempts=2)
    assert len(queued) == 6 and {u.attempts for u in queued} == {0}


def test_a_failed_unit_fails_the_job_and_cancels_the_others(db: str) -> None:
    job_id = verification()
    detach(job_id)
    first, second, *_ = [u.id for u in units(job_id)]
    succeed(first)
    with session_scope() as session:
        assert jobs.claim(session, second, "w", LEASE, TrainingRun)
        assert jobs.finish(session, second, "w", state=JobState.failed, error="boom",
                           table=TrainingRun)  # fmt: skip
        unit = session.get(TrainingRun, second)
        assert unit is not None
        assert training_runs.fail_job(session, unit, "boom")
        assert not training_runs.fail_job(session, unit, "boom")  # once
    job = job_row(job_id)
    assert job.state == "failed" and job.error is not None
    assert job.error.startswith("training run b/nano/seeds 0") and job.error.endswith("boom")
    states = [u.state for u in units(job_id)]
    assert states[:2] == ["succeeded", "failed"] and set(states[2:]) == {"cancelled"}
