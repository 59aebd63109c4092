"""What a job kind is to the worker: its handler, the function that does the work.

A handler receives a `JobContext` and returns the job's JSON result. It calls plain
library functions (`curation`, `training`), passing `ctx.progress` as their callback.
The handlers are listed in `service.worker.handlers.KINDS`; each kind's queue comes from
the static table `service.queues.KIND_QUEUES`, which the API reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from service.queues import KIND_QUEUES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from service.models import Job

Start = Callable[["Session"], tuple[list["Job"], Callable[[], None]]]
"""What `JobContext.wait_for` runs in its transaction: add jobs; return those to wait for
and what sends them once committed."""


class JobContext(Protocol):
    job_id: str
    project_id: str
    params: dict[str, Any]
    artifact_dir: Path

    def progress(self, fraction: float, message: str = "") -> None: ...

    def add_artifact(
        self, name: str, path: Path, media_type: str, *, deferred: bool = False
    ) -> None:
        """List a file among the job's artifacts. `deferred`: not written yet; the kind's
        `follow_up` draws it after the job's result is stored (its size is null until
        then, and a download before then draws it first)."""
        ...

    def detach(self, message: str) -> bool:
        """Hand the job over to training units it has planned (the job stays running, held
        by no worker); False if this attempt no longer held the job. Then raise Detached."""
        ...

    def wait_for(self, message: str, start: Start) -> bool:
        """Start more work and make the job wait for it, in one transaction: `start(session)`
        adds jobs and returns those the job waits for and what sends them once committed
        (`jobs.wait_again`). False (and nothing added) if this attempt no longer held the
        job. Then raise Waiting."""
        ...


class Waiting(Exception):  # noqa: N818 (not an error: how a handler ends its attempt early)
    """Raised by a handler after `ctx.wait_for(...)` succeeded: the attempt ends without a
    result, and the job waits, queued, for the jobs it started (a study's next look); it is
    sent again once they have succeeded."""


class JobInterrupted(Exception):
    """The job (or training unit) was cancelled, or this worker lost its lease to another
    attempt: raised by `progress`, and by a handler that finds its lease gone."""


class Detached(Exception):  # noqa: N818 (not an error: how a handler ends its attempt early)
    """Raised by a handler after `ctx.detach(...)`: the attempt ends without a result and
    the job stays running while its training units work (service/store/training_runs.py);
    the last of them finishes it."""


Handler = Callable[[JobContext], dict[str, Any]]
FollowUp = Callable[[str, dict[str, Any]], None]
"""Work after a job succeeded and its result is stored, off the path to its result (a
scan's plots): called with the job id and the result. Its failure is logged, never the
job's: whatever it leaves undone is done on first request (`add_artifact(deferred=True)`)."""


@dataclass(frozen=True)
class JobKind:
    name: str
    queue: str
    handler: Handler
    description: str
    follow_up: FollowUp | None = None


def job_kind(
    name: str, handler: Handler, description: str, follow_up: FollowUp | None = None
) -> JobKind:
    """A kind listed in `service.queues.KIND_QUEUES` (its queue comes from there)."""
    if name not in KIND_QUEUES:
        raise LookupError(f"job kind {name!r} has no queue in service.queues.KIND_QUEUES")
    return JobKind(name, KIND_QUEUES[name], handler, description, follow_up)
