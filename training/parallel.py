"""Training runs in a pool of spawned processes, one torch thread each.

Each run's events (training.events) come back through a queue and a cancel goes out
through an event: a worker's event callback raises Cancelled once the event is set, so
its run checkpoints and stops at the next step boundary. A pool cannot start inside a
daemonic process (a Celery prefork worker): callers there train in-process. Workers
are spawned, not forked (forking a process that has started torch's thread pools can
hang), so a script that uses the pool needs the `if __name__ == "__main__":` guard.

A spawned worker starts with Python's defaults (no logging configured): the caller's
`initializer` runs first in each (to log like the caller, say), and `run_scope` is
entered around each run with its name, so that what the run logs can say which run it is.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from curation.skills.spec import SkillSpec
from training.evaluate import EvalSpec
from training.events import Event, OnEvent, RunFinished, RunKey
from training.trainer import RunResult, TrainConfig, train_run


class Cancelled(Exception):
    """Raised inside a pool worker when the verification was cancelled."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a verification: which it is, what and where to train."""

    key: RunKey
    mixture_dir: str
    out_dir: str
    config: TrainConfig


RunScope = Callable[..., AbstractContextManager[object]]
"""Called as `run_scope(run="<arm>/<size>/<seed>")` and entered around each run, in the
process that trains it (e.g. a logging context). Picklable, for a pool."""


def train(
    run: RunSpec, spec: EvalSpec, on_event: OnEvent | None, run_scope: RunScope | None = None
) -> RunResult:
    """trainer.train_run for `run`, inside `run_scope` (if any)."""
    scope = nullcontext() if run_scope is None else run_scope(run=str(run.key))
    with scope:
        return train_run(run.config, run.mixture_dir, spec, run.out_dir, on_event, key=run.key)


_EVENTS: Any = None
_CANCEL: Any = None
_RUN_SCOPE: RunScope | None = None


def _init_worker(
    events: Any,
    cancel: Any,
    initializer: Callable[[], None] | None,
    run_scope: RunScope | None,
) -> None:
    global _EVENTS, _CANCEL, _RUN_SCOPE
    _EVENTS, _CANCEL, _RUN_SCOPE = events, cancel, run_scope
    if initializer is not None:
        initializer()


def _pool_run(run: RunSpec, skills: list[dict], eval_options: dict, heldout: Any) -> RunResult:
    def send(event: Event) -> None:
        if _CANCEL.is_set():
            raise Cancelled("verification cancelled")
        _EVENTS.put(event)

    specs = [SkillSpec.model_validate(s) for s in skills]
    spec = EvalSpec(skills=specs, heldout=heldout, **eval_options)
    return train(run, spec, send, _RUN_SCOPE)


def run_parallel(
    runs: list[RunSpec],
    spec: EvalSpec,
    workers: int,
    on_event: OnEvent,
    *,
    initializer: Callable[[], None] | None = None,
    run_scope: RunScope | None = None,
) -> dict[RunKey, RunResult]:
    """Train `runs` in a pool, passing their events to `on_event` here; their results.

    Returns once every run's RunFinished has been passed on: one process's events arrive
    in the order it sent them, so by then so have all the others of that run.
    initializer: called first in each pool process. run_scope: see RunScope. Both cross
    into spawned processes, so they must be picklable (module-level functions, partials)."""
    ctx = mp.get_context("spawn")
    events, cancel = ctx.Queue(), ctx.Event()
    skills = [s.model_dump(mode="json") for s in spec.skills]
    options = {k: v for k, v in vars(spec).items() if k not in ("skills", "heldout")}
    pool = ProcessPoolExecutor(
        workers, ctx, initializer=_init_worker, initargs=(events, cancel, initializer, run_scope)
    )
    futures = {run.key: pool.submit(_pool_run, run, skills, options, spec.heldout) for run in runs}
    finished: set[RunKey] = set()
    try:
        while len(finished) < len(futures):
            with contextlib.suppress(queue.Empty):
                event = events.get(timeout=0.5)
                on_event(event)
                if isinstance(event, RunFinished):
                    finished.add(event.key)
            for future in futures.values():
                if future.done():
                    future.result()  # a failed run fails the verification
        return {key: future.result() for key, future in futures.items()}
    except BaseException:
        cancel.set()
        for future in futures.values():
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
