"""The study job (sent once its verification has succeeded): read the verification's runs
as points of the design (analysis.study.runs_from_verification; a repetition study's with
each arm's pool from its mixture's plan), fit and recommend per skill and size
(analysis.study.analyse), and draw the figures.

An adaptive dose-response reads the runs of every look so far and asks analysis.design for
the next one first: unless it stops, the job starts that look (store.studies.start_look)
and waits for its verification again (`ctx.wait_for`), as a sequential verification adds a
look of seeds; once it stops, the analysis covers all looks and the report lists every
decision (`design.looks`)."""

from __future__ import annotations

from typing import Any

from analysis import design, plots
from analysis.study import RunPoint, analyse, runs_from_verification
from curation.atomic import write_json_atomic
from service.db import session_scope
from service.models import Job, Study, Verification
from service.settings import get_settings
from service.store import studies
from service.worker.kinds import JobContext, JobInterrupted, Waiting, job_kind


def _report(session: Any, verification_id: str) -> dict[str, Any]:
    ver = session.get(Verification, verification_id)
    assert ver is not None
    ver_job = session.get(Job, ver.job_id)
    assert ver_job is not None and ver_job.result is not None, "verification has no report"
    return dict(ver_job.result)


def decide(
    runs: dict[str, list[RunPoint]],
    natural: dict[str, float],
    adaptive: dict[str, Any],
    seeds_per_point: int,
    target_p: float,
) -> design.Decision:
    """The next look of an adaptive design from the runs so far (per skill), one fit per
    skill and size (analysis.design.next_doses, joined by `combine`). The design fits the
    dose it controls, instances placed per batch (the natural-frequency baseline at 0, left
    out of the fit but counted in the budget); the study's analysis fits placed + natural."""
    bounds = studies.design_bounds(adaptive, seeds_per_point, target_p)
    decisions, most = {}, 0
    for sid, cell in runs.items():
        for size in sorted({r.size for r in cell}):
            at = [r for r in cell if r.size == size]
            placed = [max(round(r.dose - natural[sid], 9), 0.0) for r in at]
            most = max(most, len(at))
            decisions[f"{sid}/{size}"] = design.next_doses(
                placed, [r.retained for r in at], **bounds, max_runs=adaptive["max_runs"]
            )
    if not decisions:
        return design.Decision([], True, "stopped: no run has a held-out readout")
    return design.combine(decisions, room=(adaptive["max_runs"] - most) // seeds_per_point)


def run_study_job(ctx: JobContext) -> dict[str, Any]:
    with session_scope() as session:
        study = session.get(Study, ctx.params["study_id"])
        assert study is not None, ctx.params
        ver_ids = studies.verification_ids(study)
        reports = [_report(session, vid) for vid in ver_ids]
        kind, params, points = study.kind, dict(study.params), dict(study.points)
        natural = {ref["id"]: studies.natural_per_batch(session, study, ref["id"])
                   for ref in study.skills}  # fmt: skip
        pools = {ref["id"]: studies.pools(session, study, ref["id"]) for ref in study.skills}
        skill_refs = list(study.skills)
        looks = list(study.looks or [])
    periods = {arm: p["period"] for arm, p in points.items() if "period" in p}
    runs: dict[str, list[RunPoint]] = {}
    for ref in skill_refs:
        runs[ref["id"]] = [
            run
            for report in reports
            for run in runs_from_verification(
                report,
                ref["id"],
                natural[ref["id"]],
                periods or None,
                pools[ref["id"]] if kind == "repetition" else None,
            )  # fmt: skip
        ]
    adaptive = params["design"].get("adaptive")
    if adaptive:
        k = params["seeds_per_point"]
        step = decide(runs, natural, adaptive, k, params["target_p"])
        so_far = max((len(cell) for cell in runs.values()), default=0)
        if not step.done:
            _next_look(ctx, step, so_far, len(looks) + 1)
        looks.append(studies.look_record(len(looks) + 1, step.to_dict(), [], so_far, None))
    options: dict[str, Any] = {"target_p": params["target_p"]}
    if kind in ("dose_response", "repetition"):
        options["baseline"] = studies.BASELINE
    out: dict[str, Any] = {"kind": kind, "verification_id": ver_ids[-1], "skills": {}}
    if adaptive:
        out["verification_ids"] = ver_ids
        out["design"] = {"adaptive": adaptive, "looks": looks, "reason": looks[-1]["reason"]}
    for i, ref in enumerate(skill_refs):
        ctx.progress(i / len(skill_refs), f"analysing {ref['name']}")
        cell = runs[ref["id"]]
        if kind == "spacing":  # the baseline has no period: it is not a point of the trend
            cell = [r for r in cell if r.period]
        body = analyse(kind, cell, **options)
        body["natural_per_batch"] = natural[ref["id"]]
        out["skills"][ref["id"]] = body
        if kind == "repetition":
            for path in plots.repetition(cell, ctx.artifact_dir / "plots", ref["name"]):
                ctx.add_artifact(f"{ref['id']}_{path.name}", path, "image/png")
        elif kind == "spacing":
            for path in plots.spacing(cell, ctx.artifact_dir / "plots", ref["name"]):
                ctx.add_artifact(f"{ref['id']}_{path.name}", path, "image/png")
        else:
            for path in plots.dose_response(cell, ctx.artifact_dir / "plots", ref["name"]):
                ctx.add_artifact(f"{ref['id']}_{path.name}", path, "image/png")
    report_path = ctx.artifact_dir / "study.json"
    write_json_atomic(report_path, out, indent=1, default=str)
    ctx.add_artifact("study.json", report_path, "application/json")
    return out


def _next_look(ctx: JobContext, step: design.Decision, so_far: int, look: int) -> None:
    """Start the next look and wait for its verification; raises Waiting (or
    JobInterrupted when this attempt lost the job meanwhile)."""
    doses = ", ".join(f"{d:g}" for d in step.doses)
    message = f"look {look}: doses {doses} ({step.reason}); waiting for its verification"
    settings = get_settings()
    if ctx.wait_for(
        message,
        lambda session: studies.start_look(
            session, ctx.params["study_id"], settings, step.to_dict(), so_far
        ),
    ):
        raise Waiting(message)
    raise JobInterrupted("lease lost before the next look")


KIND = job_kind(
    "study",
    run_study_job,
    "Analyse a study's runs: dose-response fits and recommendations (an adaptive design's "
    "next look first, until it stops).",
)
