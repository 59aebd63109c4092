"""The scan job: load the scan's corpus and skill versions, run `curation.scan.run_scan`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datatrove.executor.base import PipelineExecutor

from curation import executors
from curation.atomic import write_json_atomic
from curation.corpus import compare_fingerprints
from curation.scan import run_scan
from curation.skills.probes import probe_match_keys
from service.artifacts import draw_deferred
from service.db import session_scope
from service.models import Corpus, Scan
from service.settings import Settings, get_settings
from service.store import corpora, scans, skills
from service.worker.kinds import JobContext, job_kind


def executor_factory(settings: Settings) -> Callable[..., PipelineExecutor]:
    """The one place a scan's datatrove executor is chosen (SKILLMIX_SCAN_EXECUTOR, with
    SKILLMIX_SCAN_EXECUTOR_OPTIONS; checked when the settings load)."""
    return executors.executor_factory(settings.scan_executor, settings.scan_executor_options)


def run_scan_job(ctx: JobContext) -> dict[str, Any]:
    settings = get_settings()
    with session_scope() as session:
        scan = session.get(Scan, ctx.params["scan_id"])
        assert scan is not None, ctx.params
        corpus = session.get(Corpus, scan.corpus_id)
        assert corpus is not None
        source = corpora.source_of(corpus)
        registered, specs = corpus.fingerprint, skills.load_specs(session, scan.skills)
        batch_tokens, options = scan.batch_tokens, dict(scan.options)
    # The work directory outlives an attempt: a retried scan reuses completed ranks.
    workdir = settings.work_dir / ctx.job_id
    report = run_scan(
        source,
        specs,
        str(workdir),
        allowed_roots=[str(r) for r in settings.effective_allowed_roots],
        allowed_protocols=set(settings.allowed_protocols),
        batch_tokens=batch_tokens,
        tasks=settings.scan_tasks,
        workers=settings.scan_workers,
        executor_factory=executor_factory(settings),
        progress=ctx.progress,
        probe_keys={s.id: probe_match_keys(s) for s in specs if s.generator is not None},
        on_bad_record=options.get("on_bad_record", "fail"),
        tokens=options.get("tokenizer", {}).get("path", "bytes"),
        plots=False,  # drawn after the report is stored: `service.artifacts`
    )
    changed = compare_fingerprints(registered, report["corpus"]["fingerprint"])
    report["warnings"] = report.get("warnings", [])
    if changed.changed:
        report["warnings"].append(
            f"the corpus changed since it was registered: {changed.describe()}"
        )
    report["corpus"]["changed_since_registration"] = changed.to_dict()
    report_path: Path = ctx.artifact_dir / "report.json"
    write_json_atomic(report_path, report, indent=2)
    ctx.add_artifact("report.json", report_path, "application/json")
    for name, path in scans.deferred_plots(ctx.artifact_dir).items():
        ctx.add_artifact(name, path, "image/png", deferred=True)
    return report


KIND = job_kind(
    "scan",
    run_scan_job,
    "Profile a corpus against skill versions (frequency, gaps).",
    # The plots of 50 skills take seconds to draw, longer than a scan of a small corpus:
    # they are drawn once the report is stored, so a scan's result waits only for the scan.
    follow_up=draw_deferred,
)
