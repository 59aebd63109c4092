"""The diagnostic `sleep` job: the whole job path (queue, lease, progress, artifacts) with
no real work; the fault tests (tests/reliability) run it."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from service.settings import get_settings
from service.worker.kinds import JobContext, job_kind


def run_sleep(ctx: JobContext) -> dict[str, Any]:
    """Exercise the whole job path (queue, lease, progress, artifacts) with no real work.

    Each execution appends its start, steps and end to `executions.jsonl` in the job's work
    directory: how many times, by which process and when the work really ran (a claimed
    attempt; a redelivered message that finds the job held runs nothing)."""
    seconds = float(ctx.params.get("seconds", 0.0))
    steps = max(int(ctx.params.get("steps", 1)), 1)
    fail = ctx.params.get("fail")
    record = _execution_recorder(ctx.job_id)
    record("start")
    for step in range(steps):
        time.sleep(seconds / steps)
        record("step", step=step + 1)
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
    record("end")
    if fail:
        raise RuntimeError(str(fail))
    result = {"slept_seconds": seconds, "steps": steps}
    path = ctx.artifact_dir / "result.json"
    path.write_text(json.dumps(result, indent=2))
    ctx.add_artifact("result.json", path, "application/json")
    return result


def _execution_recorder(job_id: str) -> Callable[..., None]:
    folder = get_settings().work_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    path, run = folder / "executions.jsonl", secrets.token_hex(6)

    def record(event: str, **extra: Any) -> None:
        line = {"run": run, "pid": os.getpid(), "event": event, "t": time.time(), **extra}
        with open(path, "a") as fh:  # one short append per line: lines never interleave
            fh.write(json.dumps(line) + "\n")

    return record


KIND = job_kind("sleep", run_sleep, "Diagnostic job: sleeps in steps, reporting progress.")
