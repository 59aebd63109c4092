"""Training runs in a pool of spawned processes, one torch thread each.

Each run's events (training.events) come back through a queue and a cancel goes out
through an event: a worker's event callback raises Cancelled once the event is set, so
its run checkpoints and stops at the next step boundary. A pool cannot start inside a
daemonic process (a Celery prefork worker): callers there train in-process. Workers
are spawned, not forked (forking a process that has started torch's thread pools can
hang), so a script that uses the pool needs the `if __name__ == "__main__":` guard.

Seeds of one (arm, size, training settings) train together as one grouped model
(training.batched) when `seed_group` allows: `plan_groups` splits the runs into groups of
at most `seed_group` seeds (None: `batched.auto_seed_group`, from the device and the model
size), and a group is one task of the pool. A one-run group is an ordinary run.

A spawned worker starts with Python's defaults (no logging configured): the caller's
`initializer` runs first in each (to log like the caller, say), and `run_scope` is
entered around each run with its name, so that what the run logs can say which run it is.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import queue
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from curation.skills.spec import SkillSpec
from training.batched import auto_seed_group, train_group
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


def plan_groups(
    runs: list[RunSpec], seed_group: int | None = 1, workers: int = 1
) -> list[list[RunSpec]]:
    """Split `runs` into seed groups: runs of the same arm, size and training settings
    (all but the seed) go together, at most `seed_group` a group (None: automatic,
    batched.auto_seed_group for the size and device), the seeds of a cell spread evenly
    (10 seeds at most 8 a group: 5 + 5, not 8 + 2). While there are fewer groups than
    `workers` (and groups of two or more), the largest is halved so no worker idles.
    Groups keep the order of their first run; a group of one is a single run."""
    if seed_group is not None and seed_group < 1:
        raise ValueError(f"seed_group must be at least 1 (or None: automatic), not {seed_group}")
    cells: dict[tuple[Any, ...], list[RunSpec]] = {}
    for run in runs:
        cells.setdefault((run.key.arm, run.key.size, replace(run.config, seed=0)), []).append(run)
    groups: list[list[RunSpec]] = []
    for (_, size, config), members in cells.items():
        most = seed_group or auto_seed_group(size, config.device)
        n = math.ceil(len(members) / most)
        groups += [members[i * len(members) // n : (i + 1) * len(members) // n] for i in range(n)]
    while len(groups) < min(workers, len(runs)):
        largest = max(groups, key=len)
        if len(largest) < 2:
            break
        at = groups.index(largest)
        groups[at : at + 1] = [largest[: len(largest) // 2], largest[len(largest) // 2 :]]
    order = {run.key: i for i, run in enumerate(runs)}
    return sorted(groups, key=lambda group: order[group[0].key])


def group_name(group: list[RunSpec]) -> str:
    """How a group's runs' events and results name it: `<arm>/<size>/seeds 0,1,2`."""
    first = group[0].key
    return f"{first.arm}/{first.size}/seeds {','.join(str(r.key.seed) for r in group)}"


def train_seed_group(
    group: list[RunSpec],
    spec: EvalSpec,
    on_event: OnEvent | None,
    run_scope: RunScope | None = None,
) -> dict[RunKey, RunResult]:
    """Train a seed group (batched.train_group; `train` for a group of one)."""
    if len(group) == 1:
        return {group[0].key: train(group[0], spec, on_event, run_scope)}
    name = group_name(group)
    scope = nullcontext() if run_scope is None else run_scope(run=name)
    with scope:
        results = train_group(
            [r.config for r in group], [r.mixture_dir for r in group], spec,
            [r.out_dir for r in group], on_event, keys=[r.key for r in group], group=name,
        )  # fmt: skip
    return {run.key: result for run, result in zip(group, results, strict=True)}


def train_runs(
    runs: list[RunSpec],
    spec: EvalSpec,
    workers: int,
    on_event: OnEvent,
    *,
    seed_group: int | None = 1,
    initializer: Callable[[], None] | None = None,
    run_scope: RunScope | None = None,
) -> dict[RunKey, RunResult]:
    """Train `runs` in seed groups (plan_groups): in a pool of `workers` processes when
    that is more than one and there are several groups, else one group after another
    here. Their results by key."""
    groups = plan_groups(runs, seed_group, workers)
    if workers > 1 and len(groups) > 1:
        return run_parallel(
            runs, spec, min(workers, len(groups)), on_event,
            initializer=initializer, run_scope=run_scope, seed_group=seed_group,
        )  # fmt: skip
    results: dict[RunKey, RunResult] = {}
    for group in groups:
        results |= train_seed_group(group, spec, on_event, run_scope)
    return results


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


def _pool_run(
    group: list[RunSpec], skills: list[dict], eval_options: dict, heldout: Any
) -> dict[RunKey, RunResult]:
    def send(event: Event) -> None:
        if _CANCEL.is_set():
            raise Cancelled("verification cancelled")
        _EVENTS.put(event)

    specs = [SkillSpec.model_validate(s) for s in skills]
    spec = EvalSpec(skills=specs, heldout=heldout, **eval_options)
    return train_seed_group(group, spec, send, _RUN_SCOPE)


def run_parallel(
    runs: list[RunSpec],
    spec: EvalSpec,
    workers: int,
    on_event: OnEvent,
    *,
    initializer: Callable[[], None] | None = None,
    run_scope: RunScope | None = None,
    seed_group: int | None = 1,
) -> dict[RunKey, RunResult]:
    """Train `runs` in a pool, in seed groups (plan_groups; seed_group 1: each alone),
    passing their events to `on_event` here; their results.

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
    futures = [
        pool.submit(_pool_run, group, skills, options, spec.heldout)
        for group in plan_groups(runs, seed_group, workers)
    ]
    finished: set[RunKey] = set()
    try:
        while len(finished) < len(runs):
            with contextlib.suppress(queue.Empty):
                event = events.get(timeout=0.5)
                on_event(event)
                if isinstance(event, RunFinished):
                    finished.add(event.key)
            for future in futures:
                if future.done():
                    future.result()  # a failed run fails the verification
        return {key: result for future in futures for key, result in future.result().items()}
    except BaseException:
        cancel.set()
        for future in futures:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
