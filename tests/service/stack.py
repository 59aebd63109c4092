"""Helpers for tests that run real worker processes against PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from service.cli.embedded import start_worker, stop_process


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_state(client: httpx.Client, job_id: str) -> dict:
    r = client.get(f"/v1/jobs/{job_id}")
    r.raise_for_status()
    return r.json()


def wait_final(client: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    wait_for(
        lambda: job_state(client, job_id)["state"] in ("succeeded", "failed", "cancelled"),
        timeout,
        f"job {job_id} to finish",
    )
    return job_state(client, job_id)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its pool children, as an OOM kill or a lost node would."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def worker(log: Path) -> subprocess.Popen[bytes]:
    return start_worker(concurrency=1, log_path=log)


__all__ = ["kill", "stop_process", "wait_final", "wait_for", "worker", "job_state"]
