"""The verification job (sent once the arms' mixtures are built): hold out the corpus text no
arm trains on, train every (arm, size, seed) with `training.verify`, and record each run
from the events training reports (RunRecorder; and in MLflow with tracking on,
service.worker.tracking)."""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from curation.atomic import copy_atomic, write_json_atomic
from service import logs
from service.db import session_scope
from service.models import Job, JobState, Mixture, Verification, VerificationRun
from service.settings import get_settings
from service.store import skills
from service.worker.kinds import JobContext, job_kind
from service.worker.tracking import VerificationTracker
from training.events import Event, RunFinished, RunKey, StepDone

if TYPE_CHECKING:
    from training.data import MixtureReader

log = logging.getLogger("skillmix.verification")

HELDOUT_TOKENS = 65_536
"""General held-out loss is measured on this much of the baseline arm's tail, which no run
trains on (the token budget stops before it; placed instances push that text out of the
treatment arms altogether)."""
SYNC_SECONDS = 5.0
"""How often a running verification records its runs' progress, throughput and results."""


def built_mixtures(session: Session, arms: dict[str, str]) -> dict[str, str | Path]:
    """Arm -> output folder of its mixture. The job was sent only once every arm's mixture
    had been built (a job dependency, service.store.jobs), so each has."""
    folders: dict[str, str | Path] = {}
    for arm, mixture_id in arms.items():
        mixture = session.get(Mixture, mixture_id)
        assert mixture is not None and mixture.job_id is not None
        job = session.get(Job, mixture.job_id)
        if job is None or job.state != JobState.succeeded.value:
            state = job.state if job else "missing"
            raise RuntimeError(f"arm {arm!r}: mixture {mixture_id} is {state}, not built")
        folders[arm] = mixture.output_uri
    return folders


def heldout_tail(mixture: MixtureReader, tokens: int) -> tuple[np.ndarray, int]:
    """The last `tokens` of a mixture as a flat array, and the batch where that tail starts."""
    batches = max(1, -(-tokens // mixture.batch_tokens))
    first = max(0, mixture.n_batches - batches)
    n = mixture.seqs_per_batch
    return np.asarray(mixture.sequences(first * n, mixture.n_batches * n)).ravel(), first


class RunRecorder:
    """Records what training reports about each run (training.events) on its row: state
    `running` and summary `step`, `steps`, `tokens`, `tokens_per_second` (recent) while it
    trains, state `done` and its RunFinished summary once finished. Writes at most every
    SYNC_SECONDS, the latest event of each run."""

    def __init__(self, verification_id: str) -> None:
        self.verification_id = verification_id
        self.latest: dict[RunKey, StepDone | RunFinished] = {}
        self.written = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepDone | RunFinished):
            self.latest[event.key] = event
        if time.monotonic() - self.written > SYNC_SECONDS:
            self.write()

    def write(self) -> None:
        self.written = time.monotonic()
        latest, self.latest = self.latest, {}
        if not latest:
            return
        with session_scope() as session:
            for key, event in latest.items():
                if isinstance(event, RunFinished):
                    state, summary = "done", event.summary
                else:  # StepDone: step, steps, tokens, tokens_per_second
                    state, summary = "running", {k: v for k, v in vars(event).items() if k != "key"}
                session.execute(
                    update(VerificationRun)
                    .where(
                        VerificationRun.verification_id == self.verification_id,
                        VerificationRun.arm == key.arm,
                        VerificationRun.size == key.size,
                        VerificationRun.seed == key.seed,
                        VerificationRun.state != "done",
                    )
                    .values(state=state, summary=summary)
                )

    def stop(self) -> None:
        """Record the runs that finished; those this attempt left unfinished are pending."""
        self.latest = {k: e for k, e in self.latest.items() if isinstance(e, RunFinished)}
        self.write()
        with session_scope() as session:
            session.execute(
                update(VerificationRun)
                .where(
                    VerificationRun.verification_id == self.verification_id,
                    VerificationRun.state == "running",
                )
                .values(state="pending", summary=None)
            )


def run_verification_job(ctx: JobContext) -> dict[str, Any]:
    # Imported here, not at module level: every worker imports every handler (their table
    # in worker/handlers/__init__.py), and one without torch serves the curation queue.
    from training.data import open_mixture
    from training.trainer import TrainConfig
    from training.verify import run_verification

    settings = get_settings()
    with session_scope() as session:
        ver = session.get(Verification, ctx.params["verification_id"])
        assert ver is not None, ctx.params
        params, ver_id, arms, skill_refs = dict(ver.params), ver.id, dict(ver.arms), ver.skills
        folders = built_mixtures(session, arms)
        specs = skills.load_specs(session, ver.skills)
    reference = open_mixture(
        folders["baseline"] if "baseline" in folders else next(iter(folders.values()))
    )
    heldout, tail_start = heldout_tail(reference, HELDOUT_TOKENS)
    budget = params.get("token_budget") or tail_start * reference.batch_tokens
    if budget > tail_start * reference.batch_tokens:
        raise ValueError(
            f"token_budget {budget:,} reaches into the last {HELDOUT_TOKENS:,} tokens, which "
            f"are held out for the general loss; use at most "
            f"{tail_start * reference.batch_tokens:,} or a longer mixture"
        )
    workdir = settings.work_dir / ctx.job_id
    recorder = RunRecorder(ver_id)
    workers, threads = settings.training_workers, None
    if workers > 1 and multiprocessing.current_process().daemon:
        # A Celery prefork pool process may not start processes of its own: train the runs
        # one after another here, on one thread each, so results equal a pool's bit for bit.
        log.warning(
            "verification %s: this worker's pool processes cannot start training processes "
            "(prefork); training its runs one at a time. A worker for the training queue "
            "alone (`skillmix worker --queues training`, the solo pool) trains %d at once.",
            ver_id,
            workers,
        )
        workers, threads = 1, 1
    config = TrainConfig(checkpoint_every=params.get("checkpoint_every", 500), num_threads=threads)
    tracker = VerificationTracker(settings, ctx.project_id, ctx.job_id)
    if tracker.on:
        per_run = ("size", "seed", "token_budget", "eval_every", "device")
        tracker.start(
            ver_id,
            {arm: (arms[arm], open_mixture(folder).manifest) for arm, folder in folders.items()},
            skill_refs,
            {**params, "token_budget": budget},
            {k: v for k, v in asdict(config).items() if k not in per_run},
        )

    def on_event(event: Event) -> None:
        recorder(event)
        tracker(event)

    try:
        report = run_verification(
            folders,
            specs,
            params["sizes"],
            params["seeds"],
            budget,
            params["eval_every"],
            params.get("threshold"),
            params.get("device") or settings.device,
            workdir,
            progress=ctx.progress,
            heldout_docs=heldout,
            on_event=on_event,
            baseline="baseline" if "baseline" in folders else None,
            workers=workers,
            config=config,
            # Training processes log like this worker, naming the job and their run.
            initializer=logs.child_setup(),
            run_scope=logs.log_context,
            metric=params.get("metric"),
            seed_group=settings.seed_group,
        )
    except BaseException as exc:
        from service.worker.runner import JobInterrupted  # loaded by now; a cycle at import

        tracker.stop("KILLED" if isinstance(exc, JobInterrupted) else "FAILED")
        raise
    finally:
        recorder.stop()
    published = []
    for path in sorted((workdir / "plots").glob("*.png")):
        target = ctx.artifact_dir / path.name
        copy_atomic(path, target)
        ctx.add_artifact(path.name, target, "image/png")
        published.append(target)
    report_path = ctx.artifact_dir / "report.json"
    write_json_atomic(report_path, report, indent=1, default=str)
    ctx.add_artifact("report.json", report_path, "application/json")
    tracker.finish(report, [report_path, *published])
    report["heldout"] = {
        "tokens": int(heldout.size),
        "from_batch": tail_start,
        "arm": "baseline" if "baseline" in folders else next(iter(folders)),
    }
    return report


KIND = job_kind(
    "verification", run_verification_job, "Train small models on mixtures and judge retention."
)
