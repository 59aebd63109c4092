"""The verification job (sent once the arms' mixtures are built): hold out the corpus text no
arm trains on, train every (arm, size, seed) with `training.verify`, and record each run
from the events training reports (RunRecorder; and in MLflow with tracking on,
service.worker.tracking).

Its training is spread over units of work (service/store/training_runs.py): the job's
first attempt plans one unit per (arm, size, seed group) and hands the job over to them
(`run_verification_job`); any training worker trains a unit (`run_training_unit`); the
worker of the last one runs the job's handler again, which finds every unit done and
writes the report, verdicts and plots (`finish`). That step is where a sequential design
adds a look of seeds instead (`next_look`)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from curation.atomic import copy_atomic, write_json_atomic
from service import logs
from service.db import session_scope
from service.models import Job, JobState, Mixture, Verification, VerificationRun, utcnow
from service.settings import Settings, get_settings
from service.store import skills, training_runs, verifications
from service.worker.kinds import Detached, JobContext, JobInterrupted, job_kind
from service.worker.tracking import VerificationTracker
from training.events import Event, RunFinished, RunKey, StepDone, describe

if TYPE_CHECKING:
    from curation.skills.spec import SkillSpec
    from training.data import MixtureReader
    from training.parallel import RunSpec
    from training.trainer import TrainConfig
    from training.verify import Plan

log = logging.getLogger("skillmix.verification")

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


def heldout_tail(mixture: MixtureReader) -> tuple[np.ndarray, int]:
    """The mixture's held-out tail (its last HELDOUT_TOKENS, rounded up to whole batches) as
    a flat array, and the batch where it starts."""
    first = verifications.trainable_batches(mixture.n_batches, mixture.batch_tokens)
    n = mixture.seqs_per_batch
    return np.asarray(mixture.sequences(first * n, mixture.n_batches * n)).ravel(), first


class RunRecorder:
    """Records what training reports about each run (training.events) on its row: state
    `running` and summary `step`, `steps`, `tokens`, `tokens_per_second` (recent) while it
    trains, state `done` and its RunFinished summary once finished. Writes at most every
    SYNC_SECONDS, the latest event of each run. `keys`: the runs this recorder owns (a
    training unit's seeds; default: all of the verification's), which `stop` sets back to
    `pending` if unfinished."""

    def __init__(self, verification_id: str, keys: list[RunKey] | None = None) -> None:
        self.verification_id = verification_id
        self.keys = keys
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
            mine = VerificationRun.verification_id == self.verification_id
            if self.keys is not None:
                mine = mine & or_(
                    *(
                        (VerificationRun.arm == k.arm)
                        & (VerificationRun.size == k.size)
                        & (VerificationRun.seed == k.seed)
                        for k in self.keys
                    )
                )
            session.execute(
                update(VerificationRun)
                .where(mine, VerificationRun.state == "running")
                .values(state="pending", summary=None)
            )


@dataclass
class Setup:
    """What every step of a verification (planning, each unit, the report) derives, the
    same in every process, from its rows and its arms' mixtures."""

    verification_id: str
    project_id: str
    job_id: str
    params: dict[str, Any]
    arms: dict[str, str]
    skill_refs: list[Any]
    folders: dict[str, str | Path]
    specs: list[SkillSpec]
    heldout: np.ndarray
    tail_start: int
    budget: int
    workdir: Path
    config: TrainConfig

    @property
    def baseline(self) -> str | None:
        return "baseline" if "baseline" in self.folders else None

    @property
    def seed_scope(self) -> str:
        # A verification stored before seed_scope existed varied the initialisation only.
        return str(self.params.get("seed_scope", "init"))

    def plan(self, seeds: list[int]) -> Plan:
        """training.verify.plan_verification for these seeds (each seed's mixture variant
        built once, in the job's work folder, by whichever process asks first)."""
        from training.verify import plan_verification

        settings = get_settings()
        return plan_verification(
            self.folders, self.specs, self.params["sizes"], seeds, self.budget,
            self.params["eval_every"], self.params.get("device") or settings.device,
            self.workdir, self.heldout, config=self.config, metric=self.params.get("metric"),
            seed_scope=self.seed_scope,
            allowed_roots=[str(root) for root in settings.effective_allowed_roots],
            allowed_protocols=set(settings.allowed_protocols),
        )  # fmt: skip

    def first_seeds(self) -> list[int]:
        """The seeds of the first look (all of them without sequential looks)."""
        seeds, looks = list(self.params["seeds"]), self.params.get("looks")
        return seeds[: looks[0]] if looks else seeds

    def tracker(self, settings: Settings) -> VerificationTracker:
        """The verification's MLflow runs (found again, or opened by the first caller)."""
        from training.data import open_mixture

        tracker = VerificationTracker(settings, self.project_id, self.job_id)
        if tracker.on:
            per_run = ("size", "seed", "token_budget", "eval_every", "device")
            tracker.start(
                self.verification_id,
                {a: (self.arms[a], open_mixture(f).manifest) for a, f in self.folders.items()},
                self.skill_refs,
                {**self.params, "token_budget": self.budget},
                {k: v for k, v in asdict(self.config).items() if k not in per_run},
            )
        return tracker


def setup(verification_id: str, settings: Settings) -> Setup:
    """Load the verification and check its token budget against the held-out tail."""
    # Imported here, not at module level: every worker imports every handler (their table
    # in worker/handlers/__init__.py), and one without torch serves the curation queue.
    from training.data import open_mixture
    from training.trainer import TrainConfig

    with session_scope() as session:
        ver = session.get(Verification, verification_id)
        assert ver is not None, verification_id
        params, arms, skill_refs = dict(ver.params), dict(ver.arms), list(ver.skills)
        project_id, job_id = ver.project_id, ver.job_id
        folders = built_mixtures(session, arms)
        specs = skills.load_specs(session, ver.skills)
    reference = open_mixture(
        folders["baseline"] if "baseline" in folders else next(iter(folders.values()))
    )
    heldout, tail_start = heldout_tail(reference)
    budget = params.get("token_budget") or tail_start * reference.batch_tokens
    overrun = verifications.budget_overrun(budget, reference.n_batches, reference.batch_tokens)
    if overrun:
        raise ValueError(overrun)
    # Several training processes on a CPU machine (SKILLMIX_TRAINING_WORKERS): one torch
    # thread each (on 2 cores two single-thread runs beat one two-thread run).
    threads = 1 if settings.training_workers > 1 else None
    config = TrainConfig(
        checkpoint_every=params.get("checkpoint_every", 500),
        num_threads=threads,
        lr_schedule=params.get("lr_schedule", "cosine"),
    )
    return Setup(
        verification_id, project_id, job_id, params, arms, skill_refs, folders, specs,
        heldout, tail_start, budget, settings.work_dir / job_id, config,
    )  # fmt: skip


def seed_groups(runs: list[RunSpec], seed_group: int | None = 1) -> list[training_runs.Group]:
    """The units that train `runs` (training.verify.plan_runs): one per seed group of an
    (arm, size) (training.parallel.plan_groups; SKILLMIX_SEED_GROUP, automatic: 1 on a
    CPU), in the plan's order; a unit's seeds train together as one grouped model."""
    from training.parallel import plan_groups

    return [
        (group[0].key.arm, group[0].key.size, [run.key.seed for run in group])
        for group in plan_groups(runs, seed_group)
    ]


def next_look(setup: Setup, results: list[tuple[Any, Any]], lines: dict[str, Any]) -> list[int]:
    """Seeds to add in another look of a sequential design (none: the report is final):
    training.verdict.next_look on the retained counts of the runs trained so far
    (training.verify.look_counts), over the looks fixed at create."""
    from training import verdict
    from training.verify import look_counts

    looks = setup.params.get("looks")
    if not looks:
        return []
    target = verdict.next_look(look_counts(results, lines), looks)
    if target is None:
        return []
    trained = len({run.key.seed for run, _ in results})
    return list(setup.params["seeds"])[trained:target]


def _skip_untrained(verification_id: str, trained: set[int]) -> None:
    """Runs a sequential verification never needed (its verdicts were decided at an earlier
    look) are `skipped`, not left pending."""
    with session_scope() as session:
        for run in session.scalars(
            select(VerificationRun).where(VerificationRun.verification_id == verification_id)
        ):
            if run.seed not in trained and run.state != "done":
                run.state = "skipped"


def run_verification_job(ctx: JobContext) -> dict[str, Any]:
    """Plan the units and hand the job over to them (Detached); once they have all
    succeeded (the attempt that the last unit's worker runs), write the report."""
    settings = get_settings()
    s = setup(ctx.params["verification_id"], settings)
    # Refuses a metric a skill cannot provide, or arms that differ, before any training.
    runs = s.plan(s.first_seeds()).runs
    with session_scope() as session:
        job = session.get(Job, ctx.job_id)
        assert job is not None
        training_runs.plan(
            session,
            job,
            s.verification_id,
            seed_groups(runs, settings.seed_group),
            max_attempts=settings.max_attempts,
        )
        units = training_runs.units_of(session, ctx.job_id)
    if all(u.state == JobState.succeeded.value for u in units):
        return finish(ctx, s, settings, units)
    return hand_over(ctx, s, settings, units)


def hand_over(ctx: JobContext, s: Setup, settings: Settings, units: list[Any]) -> dict[str, Any]:
    """Detach the job and send its queued units; raises Detached."""
    s.tracker(settings)  # the parent MLflow run exists before any unit looks for it
    queued = [u for u in units if u.state == JobState.queued.value]
    done = len(units) - len(queued)
    message = f"training: {len(units)} runs on the {units[0].queue} queue ({done} done)"
    if not ctx.detach(message):
        raise JobInterrupted("lease lost before the hand-over")
    with session_scope() as session:
        sent = training_runs.send(session, queued)
    log.info("verification %s: %d training runs sent (%d done before)", s.verification_id,
             sent, done)  # fmt: skip
    raise Detached(message)


def finish(ctx: JobContext, s: Setup, settings: Settings, units: list[Any]) -> dict[str, Any]:
    """Every unit succeeded: the report from the runs' stored results (or another look)."""
    from training import verdict
    from training.trainer import load_result
    from training.verify import SEQUENTIAL_RULE, look_counts, make_report

    seeds = list(dict.fromkeys(seed for u in units for seed in u.seeds))
    plan = s.plan(seeds)
    ctx.progress(0.99, "writing the report")
    results = [(run, load_result(run.out_dir)) for run in plan.runs]
    report = make_report(
        results, plan.mixtures, plan.spec.skills, s.params.get("threshold"), s.baseline,
        s.workdir, s.params.get("metric"), s.seed_scope, plan.collisions,
    )  # fmt: skip
    look = max(u.look for u in units)
    if more := next_look(s, results, report["settings"]["thresholds"]):
        groups = seed_groups(s.plan(more).runs, settings.seed_group)
        with session_scope() as session:
            job = session.get(Job, ctx.job_id)
            assert job is not None
            # The store made a run row for every seed up to max_seeds at create.
            training_runs.plan(session, job, s.verification_id, groups, look=look + 1,
                               max_attempts=settings.max_attempts)  # fmt: skip
            units = training_runs.units_of(session, ctx.job_id)
        return hand_over(ctx, s, settings, units)
    if looks := s.params.get("looks"):
        z = verdict.looks_z(len(looks))
        counts = look_counts(results, report["settings"]["thresholds"])
        report["settings"]["sequential"] = {
            "looks": looks, "looks_done": [n for n in looks if n <= len(seeds)] or [len(seeds)],
            "z": z, "rule": SEQUENTIAL_RULE,
            "decided": all(
                verdict.decide(verdict.wilson_interval(k, n, z)) != "inconclusive"
                for k, n in counts.values()
            ),
        }  # fmt: skip
        _skip_untrained(s.verification_id, {run.key.seed for run in plan.runs})
    started = min((u.started_at for u in units if u.started_at), default=utcnow())
    report["seconds"] = round((utcnow() - started).total_seconds(), 1)
    write_json_atomic(s.workdir / "report.json", report, indent=1)
    published = []
    for path in sorted((s.workdir / "plots").glob("*.png")):
        target = ctx.artifact_dir / path.name
        copy_atomic(path, target)
        ctx.add_artifact(path.name, target, "image/png")
        published.append(target)
    report_path = ctx.artifact_dir / "report.json"
    write_json_atomic(report_path, report, indent=1, default=str)
    ctx.add_artifact("report.json", report_path, "application/json")
    s.tracker(settings).finish(report, [report_path, *published])
    report["heldout"] = {
        "tokens": int(s.heldout.size),
        "from_batch": s.tail_start,
        "arm": s.baseline or next(iter(s.folders)),
    }
    return report


class UnitContext(Protocol):
    """What `run_training_unit` needs of the runner's UnitContext."""

    unit_id: str
    job_id: str
    verification_id: str
    arm: str
    size: str
    seeds: list[int]

    def progress(self, fraction: float, message: str = "") -> None: ...


def run_training_unit(ctx: UnitContext) -> None:
    """Train the unit's seeds (resuming each from its checkpoint, skipping those finished),
    recording each run's events; ctx.progress raises to stop (a cancel, a lost lease)."""
    from training.parallel import train_seed_group

    settings = get_settings()
    s = setup(ctx.verification_id, settings)
    plan = s.plan(list(ctx.seeds))
    spec = plan.spec
    mine = [r for r in plan.runs if (r.key.arm, r.key.size) == (ctx.arm, ctx.size)]
    recorder = RunRecorder(s.verification_id, [r.key for r in mine])
    tracker = s.tracker(settings)
    done = dict.fromkeys((r.key for r in mine), 0.0)

    def on_event(event: Event) -> None:
        recorder(event)
        tracker(event)
        if isinstance(event, StepDone):
            done[event.key] = event.step / event.steps
        elif isinstance(event, RunFinished):
            done[event.key] = 1.0
        else:
            return
        ctx.progress(sum(done.values()) / len(done), describe(event))

    try:
        # The unit's seeds as one grouped model (a group of one: a single run).
        train_seed_group(mine, spec, on_event, logs.log_context)
    except BaseException as exc:
        tracker.stop("KILLED" if isinstance(exc, JobInterrupted) else "FAILED", parent=False)
        raise
    finally:
        recorder.stop()


KIND = job_kind(
    "verification", run_verification_job, "Train small models on mixtures and judge retention."
)
