"""The mixture job: re-plan from the stored scan and dosing, then build, manifest, audit."""

from __future__ import annotations

import json
import shutil
from typing import Any

from curation.corpus import CorpusSource
from curation.mixture import AuditFailed, DosingPlan, build_mixture, plan_mixture
from service.db import session_scope
from service.handlers.scan import load_specs
from service.kinds import CURATION, JobContext, register
from service.models import Corpus, Job, Mixture, Scan
from service.settings import get_settings


@register("mixture", CURATION, "Build a reweighted, spaced mixture and audit it.")
def run_mixture_job(ctx: JobContext) -> dict[str, Any]:
    settings = get_settings()
    with session_scope() as session:
        mixture = session.get(Mixture, ctx.params["mixture_id"])
        assert mixture is not None, ctx.params
        corpus = session.get(Corpus, mixture.corpus_id)
        scan = session.get(Scan, mixture.scan_id)
        assert corpus is not None and scan is not None
        scan_job = session.get(Job, scan.job_id)
        assert scan_job is not None and scan_job.result is not None
        source = CorpusSource(
            uri=corpus.uri, format=corpus.format, text_key=corpus.text_key, id_key=corpus.id_key
        )
        report, refs = scan_job.result, list(scan.skills)
        dosing, out_dir = DosingPlan.model_validate(mixture.dosing), mixture.output_uri
    specs = load_specs(refs)
    # Planning is deterministic: the same plan the API showed when the mixture was created.
    plan = plan_mixture(report, specs, dosing)
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
        )
    except AuditFailed as exc:
        _publish(ctx, exc.audit, out_dir)
        raise
    _publish(ctx, result["audit"] or {}, out_dir)
    manifest_path = ctx.artifact_dir / "manifest.json"
    manifest_path.write_text(json.dumps(result["manifest"], indent=1))
    ctx.add_artifact("manifest.json", manifest_path, "application/json")
    return {"manifest": result["manifest"], "audit": result["audit"], "output": out_dir}


def _publish(ctx: JobContext, audit: dict[str, Any], out_dir: str) -> None:
    """The audit and its plots as job artifacts (also when the audit failed the build)."""
    for name, path in (audit.pop("artifacts", None) or {}).items():
        target = ctx.artifact_dir / name
        shutil.copyfile(path, target)
        ctx.add_artifact(name, target, "image/png")
    if audit:
        path = ctx.artifact_dir / "audit.json"
        path.write_text(json.dumps(audit, indent=1))
        ctx.add_artifact("audit.json", path, "application/json")
