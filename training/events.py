"""What training tells its caller while it runs: typed events, not text to parse back.

A run reports `RunStarted`, then `StepDone` about every 1% of its steps and `Evaluated`
after each evaluation, and `RunFinished` once its result is stored. A run that finished
in an earlier attempt (its result.json on disk) reports `RunFinished` alone, so a caller
that records runs learns about every one. The events of one run come in that order.

Events are frozen dataclasses of plain values: they cross from the processes of a
parallel verification (training.parallel) to the caller pickled. A callback that raises
cancels the run: it checkpoints where it stands and the exception propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunKey:
    """Which run of a verification: its arm (mixture), model size and seed."""

    arm: str
    size: str
    seed: int

    def __str__(self) -> str:
        return f"{self.arm}/{self.size}/{self.seed}"


@dataclass(frozen=True)
class RunStarted:
    key: RunKey
    step: int
    """0, or the step of the checkpoint the run resumes from."""
    steps: int
    group: str | None = None
    """The seed group training this run with others (training.batched), None alone."""


@dataclass(frozen=True)
class StepDone:
    key: RunKey
    step: int
    steps: int
    tokens: int
    """Tokens trained on so far (step x batch tokens)."""
    tokens_per_second: int
    """Recent throughput: over the steps since the previous StepDone, evaluations included."""
    group: str | None = None
    """The seed group training this run with others (training.batched), None alone."""


@dataclass(frozen=True)
class Evaluated:
    key: RunKey
    step: int
    results: dict[str, Any]
    """What the evaluation measured, as the run stores it in its result's `evals`."""


@dataclass(frozen=True)
class RunFinished:
    key: RunKey
    summary: dict[str, Any]
    """steps, tokens, seconds, final (the last evaluation), resumes, tokens_per_second (over
    the run's whole training time, evaluations included), and group (the seed group that
    trained it, training.batched) when it trained in one."""


Event = RunStarted | StepDone | Evaluated | RunFinished
OnEvent = Callable[[Event], None]


def describe(event: Event) -> str:
    """One line for a progress message, e.g. `upweighted/nano/seed 0: step 10/400`."""
    match event:
        case RunStarted(step=0):
            what = "started"
        case RunStarted(step=step, steps=steps):
            what = f"resumed at step {step}/{steps}"
        case StepDone(step=step, steps=steps):
            what = f"step {step}/{steps}"
        case Evaluated(step=step):
            what = f"evaluated at step {step}"
        case RunFinished():
            what = "done"
    key = event.key
    return f"{key.arm}/{key.size}/seed {key.seed}: {what}"
