"""The study job (sent once its verification has succeeded): read the verification's runs
as points of the design (analysis.study.runs_from_verification; a repetition study's with
each arm's pool from its mixture's plan), fit and recommend per skill and size
(analysis.study.analyse), and draw the figures."""

from __future__ import annotations

from typing import Any

from analysis import plots
from analysis.study import analyse, runs_from_verification
from curation.atomic import write_json_atomic
from service.db import session_scope
from service.models import Job, Study, Verification
from service.store import studies
from service.worker.kinds import JobContext, job_kind


def run_study_job(ctx: JobContext) -> dict[str, Any]:
    with session_scope() as session:
        study = session.get(Study, ctx.params["study_id"])
        assert study is not None, ctx.params
        ver = session.get(Verification, study.verification_id)
        assert ver is not None
        ver_job = session.get(Job, ver.job_id)
        assert ver_job is not None and ver_job.result is not None, "verification has no report"
        report = ver_job.result
        kind, params, points = study.kind, dict(study.params), dict(study.points)
        natural = {ref["id"]: studies.natural_per_batch(session, study, ref["id"])
                   for ref in study.skills}  # fmt: skip
        pools = {ref["id"]: studies.pools(session, study, ref["id"]) for ref in study.skills}
        skill_refs = list(study.skills)
    periods = {arm: p["period"] for arm, p in points.items() if "period" in p}
    options: dict[str, Any] = {"target_p": params["target_p"]}
    if kind in ("dose_response", "repetition"):
        options["baseline"] = studies.BASELINE
    out: dict[str, Any] = {"kind": kind, "verification_id": study.verification_id, "skills": {}}
    for i, ref in enumerate(skill_refs):
        ctx.progress(i / len(skill_refs), f"analysing {ref['name']}")
        runs = runs_from_verification(
            report, ref["id"], natural[ref["id"]], periods or None,
            pools[ref["id"]] if kind == "repetition" else None,
        )  # fmt: skip
        if kind == "spacing":  # the baseline has no period: it is not a point of the trend
            runs = [r for r in runs if r.period]
        body = analyse(kind, runs, **options)
        body["natural_per_batch"] = natural[ref["id"]]
        out["skills"][ref["id"]] = body
        if kind == "repetition":
            for path in plots.repetition(runs, ctx.artifact_dir / "plots", ref["name"]):
                ctx.add_artifact(f"{ref['id']}_{path.name}", path, "image/png")
        elif kind != "spacing":
            for path in plots.dose_response(runs, ctx.artifact_dir / "plots", ref["name"]):
                name = f"{ref['id']}_{path.name}"
                ctx.add_artifact(name, path, "image/png")
    report_path = ctx.artifact_dir / "study.json"
    write_json_atomic(report_path, out, indent=1, default=str)
    ctx.add_artifact("study.json", report_path, "application/json")
    return out


KIND = job_kind(
    "study", run_study_job, "Analyse a study's runs: dose-response fits and recommendations."
)
