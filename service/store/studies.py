"""Studies: one mixture per point of a design (a dose, a schedule, a pool of unique
instances), one verification that trains them all (with a natural-frequency baseline arm),
and a `study` job that waits for it and analyses the runs (analysis.study).

An adaptive dose-response (design.adaptive) runs in looks: the coarse grid and the
baseline first (`start_study`); after each look the study job asks analysis.design where
to go next and, unless it stops, starts the next look (`start_look`: mixtures for the new
doses, a verification of its doses on fresh seeds) and waits for it again.

The children are ordinary resources that point back with `study_id`; their jobs are the
study job's children (`Job.parent_id`), so cancelling the study cancels them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from analysis import design as adaptive_design
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


def _dose_point(dose: float, look: int | None = None) -> dict[str, Any]:
    point: dict[str, Any] = {"dose": dose, "target": {"per_batch": dose}}
    return point if look is None else point | {"look": look}


def first_look(adaptive: dict[str, Any], seeds_per_point: int, target_p: float) -> Any:
    """An adaptive design's first decision (analysis.design): the coarse grid, within
    max_runs less the baseline's runs. 422 when the budget cannot hold the grid's two ends
    and the baseline."""
    least = 3 * seeds_per_point
    if adaptive["max_runs"] < least:
        raise Problem(
            422,
            "validation-error",
            "Budget too small",
            f"adaptive.max_runs {adaptive['max_runs']} cannot hold the first look: the "
            f"coarse grid's two ends and the baseline at {seeds_per_point} seeds per point "
            f"need {least} runs.",
        )
    return adaptive_design.next_doses(
        [], [], **design_bounds(adaptive, seeds_per_point, target_p),
        max_runs=adaptive["max_runs"] - seeds_per_point,
    )  # fmt: skip


def design_bounds(adaptive: dict[str, Any], seeds_per_point: int, target_p: float) -> dict:
    """analysis.design.next_doses' settings (all but max_runs) from design.adaptive."""
    return {
        "min_dose": adaptive["min"],
        "max_dose": adaptive["max"],
        "seeds_per_point": seeds_per_point,
        "target_p": adaptive.get("target_p") or target_p,
        "factor": adaptive.get("factor", 2.0),
    }


def design_points(
    kind: str, design: dict[str, Any], seeds_per_point: int = 2, target_p: float = 0.8
) -> dict[str, dict[str, Any]]:
    """Arm name -> the point it measures and its dose target (and pool), from a study's
    design (an adaptive one's first look). 422 for a design this version cannot run."""
    if adaptive := design.get("adaptive"):
        if kind not in ("dose_response", "size_transfer"):
            raise Problem(422, "study-unavailable", "Adaptive designs are dose-responses",
                          f"A {kind} study takes a fixed design; design.adaptive places the "
                          "doses of a dose_response or size_transfer study.")  # fmt: skip
        first = first_look(adaptive, seeds_per_point, target_p)
        return {_label(d): _dose_point(d, look=1) for d in first.doses}
    if kind in ("dose_response", "size_transfer"):
        doses = design.get("doses")
        if not doses:
            raise Problem(422, "validation-error", "No doses", "Give design.doses, e.g. "
                          "[0.5, 1, 2, 4, 8] (instances per batch).")  # fmt: skip
        return {_label(d): _dose_point(d) for d in sorted(set(doses))}
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
    """A point's dose of each skill: synthesized, from its pool when it has one.

    No repetition cap: the dose (or the pool) is what the study varies, and a high dose of
    a small family repeats instances whatever the cap says (two-digit comparison has 4,012
    train instances; 8 a batch over 4,064 batches is 8 copies each). The default cap of 4
    refused `make study-demo`'s doses from 4 up. Fresh first keeps every instance within
    one copy of the others, and each point's audit reports its copies per unique instance."""
    dose: dict[str, Any] = {
        "target": point["target"],
        "source": "synthesize",
        "max_repeats": MAX_REPEATS_LIMIT,
    }
    if point.get("pool_size") is not None:
        dose["pool_size"] = point["pool_size"]
    return dose


def _start_points(
    session: Session, project_id: str, settings: Settings, params: dict[str, Any],
    study_id: str, points: dict[str, dict[str, Any]],
) -> tuple[dict[str, str], list[AfterCommit]]:  # fmt: skip
    """A point mixture per point (its id written into the point): arm -> mixture id, and
    the hooks that send their builds."""
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
    return arms, hooks


def _start_verification(
    session: Session, project_id: str, settings: Settings, params: dict[str, Any],
    study_id: str, arms: dict[str, str], seeds: list[int],
) -> tuple[Verification, AfterCommit]:  # fmt: skip
    ver, hook = verifications.start_verification(
        session, project_id, settings, arms=arms, skill_ids=params["skill_ids"],
        params={
            "sizes": params["sizes"], "seeds": seeds, "token_budget": params["token_budget"],
            "eval_every": params["eval_every"], "checkpoint_every": params["checkpoint_every"],
            "threshold": params.get("threshold"), "metric": params.get("metric"),
            "device": params.get("device"), "seed_scope": params.get("seed_scope"),
        },
    )  # fmt: skip
    ver.study_id = study_id
    return ver, hook


def _sends(hooks: list[AfterCommit]) -> AfterCommit:
    def send_all() -> None:
        for send in hooks:
            send()

    return send_all


def start_study(
    session: Session, project_id: str, settings: Settings, *, params: dict[str, Any]
) -> tuple[Study, AfterCommit]:
    """Add a study: its point mixtures, the verification over them (with an automatic
    baseline), and the study job that waits for the verification."""
    k, design = params["seeds_per_point"], params["design"]
    points = design_points(params["kind"], design, k, params["target_p"])
    seeds = list(range(k))
    verifications.check_grid(params["sizes"], seeds)
    verifications.check_budget_fits(
        params.get("token_budget"), params.get("max_batches"), params["batch_tokens"]
    )
    study_id = new_id("stu")
    arms, hooks = _start_points(session, project_id, settings, params, study_id, points)
    arms[BASELINE] = "auto"
    ver, hook = _start_verification(session, project_id, settings, params, study_id, arms, seeds)
    hooks.append(hook)
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
    looks = None
    if design.get("adaptive"):
        first = first_look(design["adaptive"], k, params["target_p"])
        looks = [look_record(1, first.to_dict(), seeds, 0, ver.id)]
    study = Study(
        id=study_id,
        project_id=project_id,
        job_id=job.id,
        kind=params["kind"],
        params=params,
        skills=ver.skills,
        points=points,
        verification_id=ver.id,
        looks=looks,
    )
    session.add(study)
    adopt(session, job, study)
    session.flush()
    return study, _sends(hooks)


def look_record(
    look: int, decision: dict[str, Any], seeds: list[int], runs_so_far: int,
    verification_id: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One decision of an adaptive design, as the study records it: the look it starts
    (None when it stops), its doses and seeds, the runs before it, why, and the fit."""
    return {
        "look": None if decision["done"] else look,
        "done": decision["done"],
        "doses": decision["doses"],
        "seeds": seeds,
        "runs_so_far": runs_so_far,
        "reason": decision["reason"],
        "fit": decision["fit"],
        "verification_id": verification_id,
    }


def next_seeds(study: Study) -> list[int]:
    """Fresh seeds for the next look (after every seed of the looks so far), so no run
    repeats another's seed at a dose run again."""
    used = [seed for look in study.looks or [] for seed in look["seeds"]]
    start = max(used, default=-1) + 1
    return list(range(start, start + study.params["seeds_per_point"]))


def start_look(
    session: Session, study_id: str, settings: Settings, decision: dict[str, Any],
    runs_so_far: int,
) -> tuple[list[Job], AfterCommit]:  # fmt: skip
    """An adaptive study's next look: a point mixture per new dose (a dose run before
    trains again on its mixture), and a verification of the look's doses on fresh seeds,
    without a baseline (look 1's stands for the study); both children of the study's job.
    Records the look. Returns the verification's job (the study job waits for it) and the
    sends."""
    study = session.get(Study, study_id)
    assert study is not None and study.looks, study_id
    job = job_of(session, study)
    # The study was admitted whole at create: a look must not fail it for the project's cap
    # on active jobs (its earlier looks' jobs have ended).
    settings = settings.model_copy(update={"max_active_jobs_per_project": 0})
    look = len(study.looks) + 1
    points = dict(study.points)
    new = {
        _label(d): _dose_point(d, look=look) for d in decision["doses"] if _label(d) not in points
    }
    arms, hooks = _start_points(session, study.project_id, settings, study.params, study.id, new)
    points |= new
    arms = {_label(d): points[_label(d)]["mixture_id"] for d in decision["doses"]}
    seeds = next_seeds(study)
    ver, hook = _start_verification(
        session, study.project_id, settings, study.params, study.id, arms, seeds
    )
    hooks.append(hook)
    study.points = points
    study.verification_id = ver.id
    study.looks = [*study.looks, look_record(look, decision, seeds, runs_so_far, ver.id)]
    session.flush()
    adopt(session, job, study)
    return [verifications.job_of(session, ver)], _sends(hooks)


def verification_ids(study: Study) -> list[str]:
    """The study's verifications: one per look (adaptive), else its one."""
    return [look["verification_id"] for look in study.looks or []] or [study.verification_id]


def adopt(session: Session, parent: Job, study: Study) -> None:
    """Make the jobs of the study's children (point mixtures, the baseline, the
    verification of every look) children of its job, so a cancel reaches them."""
    mixture_ids = [p["mixture_id"] for p in study.points.values()]
    child_jobs = [
        m.job_id for m in session.scalars(select(Mixture).where(Mixture.id.in_(mixture_ids)))
    ]
    child_jobs += session.scalars(
        select(Verification.job_id).where(Verification.id.in_(verification_ids(study)))
    ).all()
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
