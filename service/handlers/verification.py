"""The verification job: wait for the arms' mixtures, hold out the corpus text no arm trains
on, train every (arm, size, seed) with `training.verify`, record each run as it ends."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from service.db import session_scope
from service.handlers.scan import load_specs
from service.kinds import TRAINING, JobContext, register
from service.models import Job, JobState, Mixture, Verification, VerificationRun
from service.settings import get_settings
from training.data import Mixture as OpenMixture
from training.data import open_mixture
from training.trainer import TrainConfig
from training.verify import run_verification

HELDOUT_TOKENS = 65_536
"""General held-out loss is measured on this much of the baseline arm's tail, which no run
trains on (the token budget stops before it; placed instances push that text out of the
treatment arms altogether)."""
WAIT_POLL_SECONDS = 2.0


def wait_for_mixtures(ctx: JobContext, arms: dict[str, str]) -> dict[str, str | Path]:
    """Block until every arm's mixture is built; return arm -> output folder."""
    while True:
        with session_scope() as session:
            pending: list[str] = []
            done: dict[str, str | Path] = {}
            for arm, mixture_id in arms.items():
                mixture = session.get(Mixture, mixture_id)
                assert mixture is not None and mixture.job_id is not None
                job = session.get(Job, mixture.job_id)
                assert job is not None
                if job.state == JobState.succeeded.value:
                    done[arm] = mixture.output_uri
                elif JobState(job.state).is_final:
                    raise RuntimeError(
                        f"arm {arm!r}: mixture {mixture_id} {job.state}: {job.error or ''}"
                    )
                else:
                    pending.append(f"{arm} ({job.state} {100 * job.progress:.0f}%)")
        if not pending:
            return done
        ctx.progress(0.0, "waiting for mixtures: " + ", ".join(pending))
        time.sleep(WAIT_POLL_SECONDS)


def heldout_tail(mixture: OpenMixture, tokens: int) -> tuple[np.ndarray, int]:
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


@register("verification", TRAINING, "Train small models on mixtures and judge retention.")
def run_verification_job(ctx: JobContext) -> dict[str, Any]:
    settings = get_settings()
    with session_scope() as session:
        ver = session.get(Verification, ctx.params["verification_id"])
        assert ver is not None, ctx.params
        arms, refs, params, ver_id = dict(ver.arms), list(ver.skills), dict(ver.params), ver.id
    folders = wait_for_mixtures(ctx, arms)
    specs = load_specs(refs)
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

    def progress(fraction: float, message: str) -> None:
        ctx.progress(fraction, message)
        if time.monotonic() - last_sync[0] > 5:
            last_sync[0] = time.monotonic()
            record_runs(ver_id, workdir)

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
        workers=settings.training_workers,
        config=TrainConfig(checkpoint_every=params.get("checkpoint_every", 500)),
    )
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
