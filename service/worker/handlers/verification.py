"""The verification job: wait for the arms' mixtures, hold out the corpus text no arm trains
on, train every (arm, size, seed) with `training.verify`, record each run as it ends."""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service import logs
from service.db import session_scope
from service.models import Job, JobState, Mixture, Verification, VerificationRun
from service.settings import get_settings
from service.store import skills
from service.worker.kinds import JobContext, job_kind

if TYPE_CHECKING:
    from training.data import MixtureReader

log = logging.getLogger("skillmix.verification")

HELDOUT_TOKENS = 65_536
"""General held-out loss is measured on this much of the baseline arm's tail, which no run
trains on (the token budget stops before it; placed instances push that text out of the
treatment arms altogether)."""
SYNC_SECONDS = 5.0
"""How often a running verification records finished runs and each run's throughput."""


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


def record_runs(verification_id: str, workdir: Path) -> None:
    """Mark runs whose result.json exists as done, with a short summary."""
    with session_scope() as session:
        runs = session.scalars(
            select(VerificationRun).where(
                VerificationRun.verification_id == verification_id, VerificationRun.state != "done"
            )
        )
        for run in runs:
            path = workdir / run.arm / run.size / str(run.seed) / "result.json"
            if path.exists():
                result = json.loads(path.read_text())
                run.state = "done"
                run.summary = {
                    k: result.get(k) for k in ("steps", "tokens", "seconds", "final", "resumes")
                }
                if result.get("tokens") and result.get("seconds"):
                    # Over the run's whole training time, evaluations included.
                    run.summary["tokens_per_second"] = round(result["tokens"] / result["seconds"])


class Throughput:
    """Each run's recent training throughput, read from the progress messages the trainer
    sends up (`<arm>/<size>/seed <n>: step <i>/<steps>`, as training.pool.label writes them)
    and recorded on its row while it trains: state `running`, summary `step`, `steps`,
    `tokens` and `tokens_per_second` (over the steps since the previous record)."""

    STEP = re.compile(r"step (\d+)/(\d+)")

    def __init__(self, verification_id: str, batch_tokens: int) -> None:
        self.verification_id, self.batch_tokens = verification_id, batch_tokens
        with session_scope() as session:
            runs = session.execute(
                select(VerificationRun.arm, VerificationRun.size, VerificationRun.seed).where(
                    VerificationRun.verification_id == verification_id
                )
            ).all()
        self.prefixes = {
            f"{arm}/{size}/seed {seed}: ": (arm, size, seed) for arm, size, seed in runs
        }
        self.latest: dict[tuple[str, str, int], tuple[float, int, int]] = {}
        self.recorded: dict[tuple[str, str, int], tuple[float, int]] = {}

    def observe(self, message: str) -> None:
        for prefix, run in self.prefixes.items():
            if message.startswith(prefix):
                step = self.STEP.fullmatch(message[len(prefix) :])
                if step:
                    self.latest[run] = (time.monotonic(), int(step[1]), int(step[2]))
                return

    def record(self) -> None:
        rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        for run, (at, step, steps) in self.latest.items():
            before = self.recorded.get(run)
            if before is not None and (step <= before[1] or at <= before[0]):
                continue  # nothing new since the last record
            summary = {"step": step, "steps": steps, "tokens": step * self.batch_tokens}
            if before is not None:
                rate = (step - before[1]) * self.batch_tokens / (at - before[0])
                summary["tokens_per_second"] = round(rate)
            rows[run] = summary
            self.recorded[run] = (at, step)
        if not rows:
            return
        with session_scope() as session:
            for (arm, size, seed), summary in rows.items():
                session.execute(
                    update(VerificationRun)
                    .where(
                        VerificationRun.verification_id == self.verification_id,
                        VerificationRun.arm == arm,
                        VerificationRun.size == size,
                        VerificationRun.seed == seed,
                        VerificationRun.state != "done",
                    )
                    .values(state="running", summary=summary)
                )

    def stop(self) -> None:
        """Runs this attempt left unfinished are pending again."""
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
    # Imported here, not at module level: the API imports every handler to know the job
    # kinds, and should not pay for torch on startup.
    from training.data import open_mixture
    from training.trainer import TrainConfig
    from training.verify import run_verification

    settings = get_settings()
    with session_scope() as session:
        ver = session.get(Verification, ctx.params["verification_id"])
        assert ver is not None, ctx.params
        params, ver_id = dict(ver.params), ver.id
        folders = built_mixtures(session, dict(ver.arms))
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
    last_sync = [0.0]
    throughput = Throughput(ver_id, reference.batch_tokens)

    def progress(fraction: float, message: str) -> None:
        throughput.observe(message)
        ctx.progress(fraction, message)
        if time.monotonic() - last_sync[0] > SYNC_SECONDS:
            last_sync[0] = time.monotonic()
            throughput.record()
            record_runs(ver_id, workdir)

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
            progress=progress,
            heldout_docs=heldout,
            baseline="baseline" if "baseline" in folders else None,
            workers=workers,
            config=TrainConfig(
                checkpoint_every=params.get("checkpoint_every", 500), num_threads=threads
            ),
            # Training processes log like this worker, naming the job and their run.
            initializer=logs.child_setup(),
            run_scope=logs.log_context,
        )
    finally:
        throughput.stop()
    record_runs(ver_id, workdir)
    for path in sorted((workdir / "plots").glob("*.png")):
        target = ctx.artifact_dir / path.name
        shutil.copyfile(path, target)
        ctx.add_artifact(path.name, target, "image/png")
    report_path = ctx.artifact_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=1, default=str))
    ctx.add_artifact("report.json", report_path, "application/json")
    report["heldout"] = {
        "tokens": int(heldout.size),
        "from_batch": tail_start,
        "arm": "baseline" if "baseline" in folders else next(iter(folders)),
    }
    return report


KIND = job_kind(
    "verification", run_verification_job, "Train small models on mixtures and judge retention."
)
