"""The reliability stack: PostgreSQL, a private Redis, the API in this process and real
`skillmix worker` processes that the tests kill, with recovery knobs turned short.

The broker is a private `redis-server` per test (tests/reliability/redis_server.py), not
the machine's: these tests stop, restart and wipe it, and no other test run on the machine
can flush its queues in the middle of a test. In CI a missing `redis-server` is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.cli.embedded import refresh_settings, run_api, start_worker
from service.db import session_scope
from service.models import Job
from service.settings import get_settings
from tests.conftest import missing
from tests.reliability.redis_server import RedisServer
from tests.service.conftest import auth, new_key
from tests.service.stack import wait_for

FAST_RECOVERY = {
    # A lost worker's lease runs out in 3 s (a new worker takes longer than that to start);
    # every worker sweeps for such jobs each second.
    "SKILLMIX_JOB_LEASE_SECONDS": "3",
    "SKILLMIX_SWEEP_INTERVAL_SECONDS": "1",
    "SKILLMIX_VISIBILITY_TIMEOUT_SECONDS": "5",
    # A verification trains in the worker's own process (one run at a time), on one
    # thread: on a busy machine two spinning OpenMP threads make every step many times
    # slower.
    "SKILLMIX_TRAINING_WORKERS": "1",
    "OMP_NUM_THREADS": "1",
}
FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Stack:
    client: httpx.Client
    redis: RedisServer
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker(self, queues: str = "curation", concurrency: int = 1) -> subprocess.Popen[bytes]:
        """A `skillmix worker` process group; its log is worker-<n>.log in `logs`."""
        log = self.logs / f"worker-{len(self.workers) + 1}.log"
        proc = start_worker(queues, concurrency=concurrency, log_path=log)
        self.workers.append(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
        """Until the worker consumes (Celery logs "<name> ready.")."""
        log = self.logs / f"worker-{self.workers.index(proc) + 1}.log"

        def ready() -> bool:
            assert proc.poll() is None, f"worker exited: {log.read_text()[-3000:]}"
            return log.exists() and " ready." in log.read_text(errors="replace")

        wait_for(ready, timeout, f"{log.name} to be ready")

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as the API shows it."""
        r = self.client.get(f"/v1/jobs/{job_id}")
        r.raise_for_status()
        return r.json()

    def wait_final(self, job_id: str, timeout: float) -> dict[str, Any]:
        wait_for(lambda: db_job(job_id)["state"] in FINAL, timeout, f"job {job_id} to finish")
        return self.job(job_id)

    def wait_running(self, job_id: str, low: float, high: float, timeout: float) -> None:
        """Until the job is running with progress in [low, high]: work genuinely under way."""

        def under_way() -> bool:
            job = db_job(job_id)
            assert job["state"] not in FINAL, f"job {job_id} ended before it could be hit: {job}"
            return job["state"] == "running" and low <= job["progress"] <= high

        wait_for(under_way, timeout, f"job {job_id} to be running at {low:.0%}..{high:.0%}")

    def log_tails(self, chars: int = 4000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
            for path in sorted(self.logs.glob("worker-*.log"))
        )


def slow_reads(env: pytest.MonkeyPatch, seconds: float) -> None:
    """Workers started from now on read corpora `seconds` slower a record (slow_reads/)."""
    env.setenv("SKILLMIX_TEST_READ_DELAY_SECONDS", str(seconds))
    paths = [str(Path(__file__).parent / "slow_reads"), os.environ.get("PYTHONPATH", "")]
    env.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and its pool children at once, as an OOM kill or a lost node would."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def db_job(job_id: str) -> dict[str, Any]:
    """The job row straight from the database (works while the broker is down)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None, job_id
        return {
            "state": job.state,
            "progress": job.progress,
            "attempts": job.attempts,
            "lease_owner": job.lease_owner,
            "error": job.error,
        }


def executions(job_id: str) -> list[dict[str, Any]]:
    """What the `sleep` handler recorded of each time its work ran (handlers/sleep.py)."""
    path = get_settings().work_dir / job_id / "executions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def runs_overlap(records: list[dict[str, Any]]) -> list[str]:
    """Run ids whose recorded steps interleave in time with another run's: work that ran
    twice at once. A run that was killed simply stops; one that resumes later is fine."""
    order = [r["run"] for r in sorted(records, key=lambda r: r["t"])]
    blocks = [run for i, run in enumerate(order) if i == 0 or order[i - 1] != run]
    return sorted({run for run in blocks if blocks.count(run) > 1})


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path / "redis")
        server.start()
    except (FileNotFoundError, RuntimeError) as exc:
        missing(f"a private redis-server is needed: {exc}")
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture
def stack(
    pg_db: str, env: pytest.MonkeyPatch, broker: RedisServer, tmp_path: Path
) -> Iterator[Stack]:
    env.setenv("SKILLMIX_BROKER_URL", broker.url())
    for key, value in FAST_RECOVERY.items():
        env.setenv(key, value)
    refresh_settings()
    logs = tmp_path / "logs"
    logs.mkdir()
    with (
        run_api() as base_url,
        httpx.Client(base_url=base_url, timeout=30, headers=auth(new_key("acme"))) as client,
    ):
        s = Stack(client=client, redis=broker, logs=logs)
        try:
            yield s
        finally:
            for proc in s.workers:
                kill_group(proc)
            # Shown by pytest only when the test failed.
            print(s.log_tails())
