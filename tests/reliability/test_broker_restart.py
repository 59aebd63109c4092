"""The broker goes away while jobs are queued and running: every job still succeeds, and
no job's work ever runs twice at the same time.

The broker is a private redis-server (tests/reliability/redis_server.py). Killed and
started again on its append-only file it keeps its messages; started again empty (a Redis
without persistence, or a FLUSHALL) it has lost them, and only the database knows the jobs:
the sweeper must send them again from there.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.reliability.conftest import Stack, db_job, executions, runs_overlap
from tests.service.stack import wait_for

JOBS = 4
SECONDS, STEPS = 3.0, 6


def submit_sleeps(stack: Stack, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = stack.client.post(
            "/v1/jobs", json={"kind": "sleep", "params": {"seconds": SECONDS, "steps": STEPS}}
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def check_all_ran_once_at_a_time(stack: Stack, ids: list[str], timeout: float) -> list[dict]:
    done = [stack.wait_final(job_id, timeout) for job_id in ids]
    assert [j["state"] for j in done] == ["succeeded"] * len(ids), done
    for job in done:
        records = executions(job["id"])
        assert runs_overlap(records) == [], (job, records)
        finished = [r for r in records if r["event"] == "end"]
        assert len(finished) == 1, (job, records)
        assert job["result"] == {"slept_seconds": SECONDS, "steps": STEPS}
    return done


def broker_outage(stack: Stack, ids: list[str], *, keep_data: bool) -> None:
    """With two jobs running and the rest queued, SIGKILL the broker; start it again
    (on its data, or empty) a moment later."""
    stack.worker(concurrency=2)

    def two_under_way() -> bool:
        jobs = [db_job(i) for i in ids]
        running = [j for j in jobs if j["state"] == "running" and 0 < j["progress"] < 1]
        return len(running) == 2 and sum(j["state"] == "queued" for j in jobs) == len(ids) - 2

    wait_for(two_under_way, 90, "two jobs running and the others queued")
    stack.redis.stop(signal.SIGKILL)
    time.sleep(1.5)
    if not keep_data:
        stack.redis.wipe()
    stack.redis.start(persist=keep_data)


@pytest.mark.timeout(240)
def test_a_broker_restart_on_its_own_data_loses_no_job(stack: Stack) -> None:
    ids = submit_sleeps(stack, JOBS)
    broker_outage(stack, ids, keep_data=True)
    done = check_all_ran_once_at_a_time(stack, ids, timeout=120)
    # The jobs that were running kept running through the outage: none started over.
    assert [j["attempts"] for j in done] == [1] * JOBS, done


@pytest.mark.timeout(240)
def test_a_broker_that_lost_every_message_gets_them_again_from_the_database(
    stack: Stack,
) -> None:
    ids = submit_sleeps(stack, JOBS)
    broker_outage(stack, ids, keep_data=False)
    check_all_ran_once_at_a_time(stack, ids, timeout=120)
