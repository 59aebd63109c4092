"""Studies: one mixture per point of a design (a dose, a schedule, a pool of unique
instances), one verification that trains them all (with a natural-frequency baseline arm),
and a `study` job that waits for it and analyses the runs (analysis.study).

The children are ordinary resources that point back with `study_id`; their jobs are the
study job's children (`Job.parent_id`), so cancelling the study cancels them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from curation.mixture.models import MAX_REPEATS_LIMIT, DosingPlan
from service.ids import new_id
from service.models import Job, JobState, Mixture, Study, Verification
from service.problems import Problem, not_found
from service.settings import Settings
from service.store import mixtures, verifications
from service.store.jobs import AfterCommit, start_job

BASELINE = "baseline"


def query(project_id: str) -> Select[Study]:
    return select(Study).where(Study.project_id == project_id, Study.deleted_at.is_(None))


def get_study(session: Session, project_id: str, study_id: str) -> Study:
    study = session.get(Study, study_id)
    if study is None or study.project_id != project_id or study.deleted_at is not None:
        raise not_found("Study", study_id)
    return study


def job_of(session: Session, study: Study) -> Job:
    job = session.get(Job, study.job_id)
    assert job is not None, study.id
    return job


def _label(value: float) -> str:
    return f"dose_{value:g}"


def design_points(kind: str, design: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Arm name -> the point it measures and its dose target (and pool), from a study's
    design. 422 for a design this version cannot run."""
    if design.get("adaptive"):
        raise Problem(
            422,
            "study-unavailable",
            "Adaptive designs not available yet",
            'Give a fixed grid, design: {"doses": [...]}; the adaptive design\'s analysis '
            "(analysis.design) exists, its looks over child jobs do not yet.",
        )
    if kind in ("dose_response", "size_transfer"):
        doses = design.get("doses")
        if not doses:
            raise Problem(422, "validation-error", "No doses", "Give design.doses, e.g. "
                          "[0.5, 1, 2, 4, 8] (instances per batch).")  # fmt: skip
        return {_label(d): {"dose": d, "target": {"per_batch": d}} for d in sorted(set(doses))}
    if kind == "repetition":
        return _pool_points(design)
    schedules = design.get("schedules")
    if not schedules or design.get("dose") is None:
        raise Problem(422, "validation-error", "No schedules", "A spacing study needs "
                      "design.dose and design.schedules, e.g. [{\"n\": 2, \"k\": 1}, "
                      "{\"n\": 8, \"k\": 4}] with n/k equal to the dose.")  # fmt: skip
    out = {}
    for every in schedules:
        n, k = int(every["n"]), int(every["k"])
        if abs(n / k - float(design["dose"])) > 1e-9:
            raise Problem(
                422,
                "validation-error",
                "Schedule off the dose",
                f"every {{n: {n}, k: {k}}} gives {n / k:g} per batch, not the study's dose "
                f"{design['dose']:g}: spacing compares one dose.",
            )
        out[f"every_{n}_{k}"] = {"schedule": {"n": n, "k": k}, "period": k,
                                 "target": {"every": {"n": n, "k": k}}}  # fmt: skip
    return out


def _pool_points(design: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A repetition study: one point per pool size at the design's fixed dose; null is
    fresh instances (the whole train split)."""
    pools, dose = design.get("pool_sizes"), design.get("dose")
    if not pools or dose is None:
        raise Problem(
            422,
            "validation-error",
            "No pool sizes",
            "A repetition study needs design.dose (instances per batch, the same at every "
            "point) and design.pool_sizes, e.g. [null, 400, 40, 4] (null: fresh instances).",
        )
    twice = sorted({"null" if p is None else str(p) for p in pools if pools.count(p) > 1})
    if twice:
        raise Problem(
            422,
            "validation-error",
            "Pool size given twice",
            f"design.pool_sizes lists {', '.join(twice)} more than once; each pool size is "
            "one point of the study.",
        )
    out = {}
    for pool in sorted(pools, key=lambda p: -1 if p is None else p):
        arm = "fresh" if pool is None else f"pool_{pool}"
        out[arm] = {"pool_size": pool, "dose": dose, "target": {"per_batch": dose}}
    return out


def _skill_dose(point: dict[str, Any]) -> dict[str, Any]:
    """A point's dose of each skill: synthesized, from its pool when it has one."""
    dose: dict[str, Any] = {"target": point["target"], "source": "synthesize"}
    if point.get("pool_size") is not None:
        # The pool is the limit being studied: the cap must not refuse what it implies
        # (fresh first keeps every pool instance within one copy of the others).
        dose |= {"pool_size": point["pool_size"], "max_repeats": MAX_REPEATS_LIMIT}
    return dose


def start_study(
    session: Session, project_id: str, settings: Settings, *, params: dict[str, Any]
) -> tuple[Study, AfterCommit]:
    """Add a study: its point mixtures, the verification over them (with an automatic
    baseline), and the study job that waits for the verification."""
    points = design_points(params["kind"], params["design"])
    seeds = list(range(params["seeds_per_point"]))
    verifications.check_grid(params["sizes"], seeds)
    verifications.check_budget_fits(
        params.get("token_budget"), params.get("max_batches"), params["batch_tokens"]
    )
    study_id = new_id("stu")
    hooks: list[AfterCommit] = []
    arms: dict[str, str] = {}
    for arm, point in points.items():
        dosing = DosingPlan.model_validate({
            "skills": {sid: _skill_dose(point) for sid in params["skill_ids"]},
            "batch_tokens": params["batch_tokens"],
            "seq_len": params["seq_len"],
            "seed": params["seed"],
            "max_batches": params.get("max_batches"),
        })  # fmt: skip
        mixture, hook = mixtures.start_mixture(
            session, project_id, settings, corpus_id=params["corpus_id"],
            scan_id=params["scan_id"], dosing=dosing, output_uri=None, dry_run=False,
        )  # fmt: skip
        mixture.study_id = study_id
        point["mixture_id"] = mixture.id
        arms[arm] = mixture.id
        assert hook is not None
        hooks.append(hook)
    arms[BASELINE] = "auto"
    ver, hook = verifications.start_verification(
        session, project_id, settings, arms=arms, skill_ids=params["skill_ids"],
        params={
            "sizes": params["sizes"], "seeds": seeds, "token_budget": params["token_budget"],
            "eval_every": params["eval_every"], "checkpoint_every": params["checkpoint_every"],
            "threshold": params.get("threshold"), "metric": params.get("metric"),
            "device": params.get("device"),
        },
    )  # fmt: skip
    hooks.append(hook)
    ver.study_id = study_id
    points[BASELINE] = {"mixture_id": ver.arms[BASELINE], "natural": True}
    job, hook = start_job(
        session,
        project_id=project_id,
        kind="study",
        params={"study_id": study_id},
        max_attempts=settings.max_attempts,
        max_active=settings.max_active_jobs_per_project,
        after=[verifications.job_of(session, ver)],
    )
    hooks.append(hook)
    study = Study(
        id=study_id,
        project_id=project_id,
        job_id=job.id,
        kind=params["kind"],
        params=params,
        skills=ver.skills,
        points=points,
        verification_id=ver.id,
    )
    session.add(study)
    adopt(session, job, study)
    session.flush()

    def send_all() -> None:
        for send in hooks:
            send()

    return study, send_all


def adopt(session: Session, parent: Job, study: Study) -> None:
    """Make the jobs of the study's children (point mixtures, the baseline, the
    verification) children of its job, so a cancel reaches them."""
    mixture_ids = [p["mixture_id"] for p in study.points.values()]
    child_jobs = [
        m.job_id for m in session.scalars(select(Mixture).where(Mixture.id.in_(mixture_ids)))
    ]
    ver = session.get(Verification, study.verification_id)
    assert ver is not None
    child_jobs.append(ver.job_id)
    session.execute(
        update(Job)
        .where(Job.id.in_([j for j in child_jobs if j]))
        .values(parent_id=parent.id)
        .execution_options(synchronize_session=False)
    )


def natural_per_batch(session: Session, study: Study, skill_id: str) -> float:
    """The corpus' own instances of the skill per batch, from a point mixture's plan."""
    for point in study.points.values():
        if point.get("natural"):
            continue
        mixture = session.get(Mixture, point["mixture_id"])
        assert mixture is not None
        natural = mixture.plan.get("skills", {}).get(skill_id, {}).get("natural", {})
        return float(natural.get("per_batch", 0.0))
    return 0.0


def pools(session: Session, study: Study, skill_id: str) -> dict[str, dict[str, Any]]:
    """Per point arm, its pool size and the unique instances its skill could draw from
    (the pool, or the train split when fresh), from the point mixture's plan."""
    out = {}
    for arm, point in study.points.items():
        if point.get("natural"):
            continue
        mixture = session.get(Mixture, point["mixture_id"])
        assert mixture is not None
        planned = mixture.plan.get("skills", {}).get(skill_id, {})
        out[arm] = {
            "pool_size": planned.get("pool_size"),
            "unique_available": planned.get("unique_available"),
        }
    return out


def recommended_mixture(
    session: Session, project_id: str, settings: Settings, *, study_id: str, size: str,
    corpus_id: str, scan_id: str, output_uri: str | None, output_format: str, margin: str,
) -> tuple[Mixture, AfterCommit | None]:  # fmt: skip
    """`apply`: build the production mixture at the study's recommended dose for `size`
    on the corpus the user names. 409 until the study has succeeded; 422 when it has no
    recommendation for that size (with its reason)."""
    study = get_study(session, project_id, study_id)
    job = job_of(session, study)
    if job.state != JobState.succeeded.value or not job.result:
        raise Problem(
            409,
            "study-not-finished",
            "Study not finished",
            f"Study {study.id} is {job.state}; apply it once it has succeeded.",
        )
    if study.kind not in ("dose_response", "size_transfer"):
        raise Problem(422, "no-recommendation", "No recommendation",
                      f"Study {study.id} is a {study.kind} study: it compares its points at "
                      "one dose and recommends none; apply a dose_response study.")  # fmt: skip
    per_skill = job.result.get("skills", {})
    targets = {}
    for sid, body in per_skill.items():
        rec = body.get("recommendation", {}).get(size)
        if rec is None:
            raise Problem(422, "no-recommendation", "No recommendation for this size",
                          f"Study {study.id} trained sizes {', '.join(study.params['sizes'])}, "
                          f"not {size!r}.")  # fmt: skip
        if "undetermined" in rec:
            raise Problem(422, "no-recommendation", "No recommendation",
                          f"Skill {sid} at {size}: {rec['undetermined']}")  # fmt: skip
        targets[sid] = rec["per_batch"] if margin == "upper" else rec["ed"]["value"]
    dosing = DosingPlan.model_validate({
        "skills": {sid: {"target": {"per_batch": v}} for sid, v in targets.items()},
        "batch_tokens": study.params["batch_tokens"],
        "seq_len": study.params["seq_len"],
        "seed": study.params["seed"],
        "format": output_format,
    })  # fmt: skip
    return mixtures.start_mixture(
        session, project_id, settings, corpus_id=corpus_id, scan_id=scan_id, dosing=dosing,
        output_uri=output_uri, dry_run=False,
    )  # fmt: skip
