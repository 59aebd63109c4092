"""The mixture job: the build of the plan made when the mixture was created, its manifest
and its audit (also logged to MLflow with tracking on, service.worker.tracking)."""

from __future__ import annotations

import json
import shutil
from typing import Any

from curation.atomic import copy_atomic, write_json_atomic
from curation.mixture import AuditFailed, DosingPlan, build_mixture, plan_mixture
from service.db import session_scope
from service.models import Corpus, Mixture, Scan
from service.settings import get_settings
from service.store import corpora, scans, skills
from service.worker.kinds import JobContext, job_kind
from service.worker.tracking import track_mixture


def run_mixture_job(ctx: JobContext) -> dict[str, Any]:
    settings = get_settings()
    with session_scope() as session:
        mixture = session.get(Mixture, ctx.params["mixture_id"])
        assert mixture is not None, ctx.params
        corpus = session.get(Corpus, mixture.corpus_id)
        scan = session.get(Scan, mixture.scan_id)
        assert corpus is not None and scan is not None
        source, specs = corpora.source_of(corpus), skills.load_specs(session, scan.skills)
        report = scans.job_of(session, scan).result
        assert report is not None
        dosing, out_dir = DosingPlan.model_validate(mixture.dosing), mixture.output_uri
        stored_plan = dict(mixture.plan)
    # The stored plan is its summary; the build needs the per-batch schedule too, which
    # planning (deterministic) makes again from the same scan, skill versions and dosing.
    plan = plan_mixture(report, specs, dosing)
    if "skills" in stored_plan and json.loads(json.dumps(plan.to_dict())) != stored_plan:
        raise RuntimeError(
            "the plan made now differs from the one stored when this mixture was created "
            "(was the planner upgraded meanwhile?); create the mixture again to see the new plan"
        )
    # An object-storage output is built in the job's work folder (kept across attempts, so
    # a retry resumes there) and uploaded, manifest last (curation.mixture.remote).
    staging = settings.work_dir / ctx.job_id / "mixture" if "://" in out_dir else None
    try:
        result = build_mixture(
            source,
            specs,
            plan,
            out_dir,
            allowed_roots=[str(r) for r in settings.effective_allowed_roots],
            allowed_protocols=set(settings.allowed_protocols),
            progress=ctx.progress,
            shard_batches=settings.mixture_shard_batches,
            exports=ctx.params.get("exports") or (),
            staging_dir=str(staging) if staging else None,
        )
    except AuditFailed as exc:
        _publish(ctx, exc.audit, out_dir)
        _track(ctx, None, failed=True)
        raise
    _publish(ctx, result["audit"] or {}, out_dir)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)  # uploaded: the local copy is not needed
    manifest_path = ctx.artifact_dir / "manifest.json"
    write_json_atomic(manifest_path, result["manifest"], indent=1)
    ctx.add_artifact("manifest.json", manifest_path, "application/json")
    _track(ctx, result["manifest"])
    return {"manifest": result["manifest"], "audit": result["audit"], "output": out_dir}


def _track(ctx: JobContext, manifest: dict[str, Any] | None, failed: bool = False) -> None:
    """The mixture's run in MLflow (tracking on): this attempt's artifacts, all of them."""
    artifacts = sorted(p for p in ctx.artifact_dir.iterdir() if p.is_file())
    track_mixture(
        get_settings(), ctx.project_id, ctx.job_id, ctx.params["mixture_id"], manifest,
        artifacts, failed,
    )  # fmt: skip


def _publish(ctx: JobContext, audit: dict[str, Any], out_dir: str) -> None:
    """The audit and its plots as job artifacts (also when the audit failed the build)."""
    for name, path in (audit.pop("artifacts", None) or {}).items():
        target = ctx.artifact_dir / name
        copy_atomic(path, target)
        ctx.add_artifact(name, target, "image/png")
    if audit:
        path = ctx.artifact_dir / "audit.json"
        write_json_atomic(path, audit, indent=1)
        ctx.add_artifact("audit.json", path, "application/json")


KIND = job_kind("mixture", run_mixture_job, "Build a reweighted, spaced mixture and audit it.")
