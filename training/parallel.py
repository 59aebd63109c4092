"""Training runs in a pool of spawned processes, one torch thread each.

Progress comes back through a queue and a cancel goes out through an event: a
worker's progress callback raises Cancelled once the event is set, so its run
checkpoints and stops at the next step boundary. A pool cannot start inside a
daemonic process (a Celery prefork worker): callers there train in-process. Workers
are spawned, not forked (forking a process that has started torch's thread pools can
hang), so a script that uses the pool needs the `if __name__ == "__main__":` guard.

A spawned worker starts with Python's defaults (no logging configured): the caller's
`initializer` runs first in each (to log like the caller, say), and `run_scope` is
entered around each run with its name, so that what the run logs can say which run it is.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from curation.skills.spec import SkillSpec
from training.evaluate import EvalSpec
from training.trainer import Progress, TrainConfig, train_run


class Cancelled(Exception):
    """Raised inside a pool worker when the verification was cancelled."""


@dataclass(frozen=True)
class RunSpec:
    """One (arm, size, seed) run of a verification: what and where to train."""

    arm: str
    size: str
    seed: int
    mixture_dir: str
    out_dir: str
    config: TrainConfig


RunScope = Callable[..., AbstractContextManager[object]]
"""Called as `run_scope(run="<arm>/<size>/<seed>")` and entered around each run, in the
process that trains it (e.g. a logging context). Picklable, for a pool."""


def scoped(run_scope: RunScope | None, job: RunSpec) -> AbstractContextManager[object]:
    """`run_scope` entered for `job` (nothing without one)."""
    if run_scope is None:
        return nullcontext()
    return run_scope(run=f"{job.arm}/{job.size}/{job.seed}")


_QUEUE: Any = None
_CANCEL: Any = None
_RUN_SCOPE: RunScope | None = None


def _init_worker(
    progress_queue: Any,
    cancel: Any,
    initializer: Callable[[], None] | None,
    run_scope: RunScope | None,
) -> None:
    global _QUEUE, _CANCEL, _RUN_SCOPE
    _QUEUE, _CANCEL, _RUN_SCOPE = progress_queue, cancel, run_scope
    if initializer is not None:
        initializer()


def _pool_run(
    index: int, job: RunSpec, skills: list[dict], eval_options: dict, heldout: Any
) -> int:
    def report(fraction: float, message: str) -> None:
        if _CANCEL.is_set():
            raise Cancelled("verification cancelled")
        _QUEUE.put((index, fraction, message))

    specs = [SkillSpec.model_validate(s) for s in skills]
    spec = EvalSpec(skills=specs, heldout=heldout, **eval_options)
    with scoped(_RUN_SCOPE, job):
        train_run(job.config, job.mixture_dir, spec, job.out_dir, report)
    return index


def run_parallel(
    jobs: list[RunSpec],
    spec: EvalSpec,
    workers: int,
    progress: Progress,
    total: int,
    *,
    initializer: Callable[[], None] | None = None,
    run_scope: RunScope | None = None,
) -> None:
    """Train `jobs` in a pool; progress counts them among `total` runs (others finished).

    initializer: called first in each pool process. run_scope: see RunScope. Both cross
    into spawned processes, so they must be picklable (module-level functions, partials)."""
    ctx = mp.get_context("spawn")
    progress_queue, cancel = ctx.Queue(), ctx.Event()
    skills = [s.model_dump(mode="json") for s in spec.skills]
    options = {k: v for k, v in vars(spec).items() if k not in ("skills", "heldout")}
    fractions, done_before = [0.0] * len(jobs), total - len(jobs)
    pool = ProcessPoolExecutor(
        workers,
        ctx,
        initializer=_init_worker,
        initargs=(progress_queue, cancel, initializer, run_scope),
    )
    pending = {
        pool.submit(_pool_run, i, job, skills, options, spec.heldout): i
        for i, job in enumerate(jobs)
    }
    try:
        while pending:
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            message = ""
            with_updates = bool(finished)
            while True:
                try:
                    i, fraction, text = progress_queue.get_nowait()
                except queue.Empty:
                    break
                fractions[i], message, with_updates = fraction, label(jobs[i], text), True
            for future in finished:
                i = pending.pop(future)
                future.result()  # a failed run fails the verification
                fractions[i], message = 1.0, label(jobs[i], "done")
            if with_updates:
                progress((done_before + sum(fractions)) / total, message)
    except BaseException:
        cancel.set()
        for future in pending:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)


def label(job: RunSpec, message: str) -> str:
    return f"{job.arm}/{job.size}/seed {job.seed}: {message}"
