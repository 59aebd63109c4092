"""A visibility timeout shorter than the task: Redis hands the message of a task that is
still running to another worker. The database lease makes that copy a no-op, so the work
runs exactly once, in one attempt."""

from __future__ import annotations

import pytest

from service.cli.embedded import refresh_settings
from tests.reliability.conftest import Stack, executions


@pytest.mark.timeout(180)
def test_a_message_redelivered_while_its_task_runs_does_not_run_it_again(
    stack: Stack, env: pytest.MonkeyPatch
) -> None:
    env.setenv("SKILLMIX_VISIBILITY_TIMEOUT_SECONDS", "1")
    refresh_settings()
    workers = [stack.worker(), stack.worker()]
    for proc in workers:
        stack.wait_ready(proc)
    r = stack.client.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 6, "steps": 12}})
    assert r.status_code == 202, r.text
    job = stack.wait_final(r.json()["id"], timeout=90)

    assert job["state"] == "succeeded", job
    assert job["attempts"] == 1, job
    records = executions(job["id"])
    assert [r["event"] for r in records if r["event"] != "step"] == ["start", "end"], records
    assert len({r["run"] for r in records}) == 1, records
    # The broker did deliver the message again while the task ran; the copy ran nothing.
    logs = stack.log_tails(chars=10**6)
    assert "'skipped (running)'" in logs, logs
