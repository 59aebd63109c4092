"""build_mixture: corpus + resolved plan -> mixture directory, manifest and audit.

Steps, each resumable:
1. check the corpus (allowed roots, unchanged since the scan) and the output
   directory (under an allowed root; empty, or holding this same mixture);
2. if a skill repeats corpus documents: a first pass (CorpusReader ->
   SkillTagger -> RepeatPoolCollector) spills its matched documents to
   `.build/pool/` (kept for a resume);
3. one streaming pass (CorpusReader -> MixtureWriter) writes the shards; a
   rerun skips committed shards and ends byte-identical (see MixtureWriter);
4. the exports asked for (`curation.mixture.exports`: mds, datatrove, bin), each a folder
   renamed into `exports/` whole; then manifest.json (with `order: "fixed"` and the
   exports' files), then `.build/` is removed;
5. the audit re-scans the output; a failed audit raises AuditFailed.

An fsspec URL as out_dir (s3://, gs://, under an allowed root of an allowed protocol) is
built in a local staging folder and uploaded (`curation.mixture.remote`), manifest last.

The writer is single-rank by design: the mixture is one global order, and
every placement depends on how much text came before it. The first pass is
plain datatrove steps and could run sharded by rank in a user's pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from curation.atomic import remove_temporaries
from curation.corpus import CorpusSource, compare_fingerprints, fingerprint, validate_corpus
from curation.mixture.audit import DEFAULT_TOLERANCE, AuditFailed, audit_mixture
from curation.mixture.exports import ORDER, check_exports, export_mixture
from curation.mixture.format import MANIFEST
from curation.mixture.manifest import build_manifest, read_manifest
from curation.mixture.plan import MixturePlan
from curation.mixture.pool import RepeatPool, RepeatPoolCollector, load_pool, pool_path
from curation.mixture.shards import BUILD_DIR
from curation.mixture.state import write_json
from curation.skills.probes import probe_match_keys
from curation.skills.spec import SkillSpec
from curation.sources.paths import SourceRejected, is_inside
from curation.sources.reader import BadRecordPolicy, CorpusReader
from curation.sources.records import ScanInputError
from curation.steps.mixture_writer import MixtureWriter
from curation.steps.tagger import SkillTagger

Progress = Callable[[float, str], None]
POOL_END, WRITE_END = 0.2, 0.85


def _output_dir(out_dir: str, allowed_roots: list[str]) -> str:
    """realpath of `out_dir` after checking it is local, under a root, and ours to write."""
    if "://" in out_dir or not os.path.isabs(out_dir):
        raise SourceRejected(f"{out_dir!r}: a mixture is written to an absolute local path")
    real = os.path.realpath(out_dir)
    roots = [os.path.realpath(r) for r in allowed_roots if "://" not in r]
    if not any(is_inside(real, root) for root in roots):
        raise SourceRejected(
            f"{out_dir} is outside the allowed roots ({', '.join(roots) or 'none configured'}); "
            "write the mixture under one of them (SKILLMIX_ALLOWED_ROOTS)"
        )
    entries = set(os.listdir(real)) if os.path.isdir(real) else set()
    if entries and not {MANIFEST, BUILD_DIR} & entries:
        raise SourceRejected(f"{out_dir} is not empty and holds no mixture; use a new folder")
    os.makedirs(real, exist_ok=True)
    return real


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _check_corpus(plan: MixturePlan, current: dict[str, Any]) -> None:
    if plan.corpus_fingerprint and compare_fingerprints(plan.corpus_fingerprint, current).changed:
        diff = compare_fingerprints(plan.corpus_fingerprint, current)
        raise ScanInputError(
            f"the corpus changed since it was scanned ({diff.describe()}); "
            "scan it again and plan the mixture from the new scan"
        )


def _repeat_pool(
    out_dir: str,
    files: list[str],
    reader: Callable[[], CorpusReader],
    plan: MixturePlan,
    specs: Mapping[str, SkillSpec],
    report: Progress,
) -> RepeatPool | None:
    """The first pass: matched documents of the `repeat` skills (reused if already collected)."""
    repeat = [sid for sid, skill in plan.skills.items() if skill.source == "repeat"]
    if not repeat:
        return None
    folder = os.path.join(out_dir, BUILD_DIR, "pool")
    if not os.path.exists(pool_path(folder, 0)):
        collector = RepeatPoolCollector(
            folder,
            repeat,
            {sid: probe_match_keys(specs[sid]) for sid in repeat if specs[sid].generator},
            max_tokens=plan.slot_tokens,
            seq_len=plan.dosing.seq_len,
            tokenizer=plan.tokenizer,
        )
        tagger = SkillTagger([specs[sid] for sid in repeat])
        docs: Iterable[Any] = collector.run(tagger.run(reader().run()))
        total = max(1, plan.corpus["docs"])
        for done, _ in enumerate(docs, start=1):
            if done % 1000 == 0:
                report(POOL_END * min(1.0, done / total), f"collected {done:,} documents")
    return load_pool([pool_path(folder, 0)], files)


def build_mixture(
    source: CorpusSource,
    skills: Sequence[SkillSpec | Mapping[str, Any]],
    plan: MixturePlan,
    out_dir: str,
    *,
    allowed_roots: list[str],
    allowed_protocols: set[str] | None = None,
    progress: Progress | None = None,
    on_bad_record: BadRecordPolicy = "fail",
    shard_batches: int | None = None,
    audit: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    plots: bool = True,
    exports: Sequence[str] = (),
    staging_dir: str | None = None,
) -> dict[str, Any]:
    """Build the mixture `plan` describes from `source` into `out_dir`; returns manifest and audit.

    `exports`: names from `curation.mixture.exports.EXPORTS`, written beside the shards.
    An fsspec URL as `out_dir` needs `staging_dir`, a local folder (under an allowed root)
    where the mixture is built before its upload; a rerun resumes there.

    The seed is `plan.dosing.seed`. Same inputs give byte-identical files. A rerun
    with the same out_dir resumes an interrupted build (or returns a finished
    one, re-audited). `progress(fraction, message)` may raise to stop the build.
    Raises PlanError when the corpus cannot supply a `repeat` dose,
    ScanInputError when the corpus changed since the scan or has bad records,
    SourceRejected for paths outside the allowed roots, and AuditFailed (after
    writing everything, audit included) when the audit misses the plan.
    """
    exports = check_exports(exports)
    if "://" in out_dir:
        from curation.mixture import remote

        target, done = remote.prepare_upload(
            out_dir, plan.to_dict(), exports, allowed_roots, allowed_protocols, staging_dir
        )
        if done is not None:
            return done
        assert staging_dir is not None
        try:
            built = build_mixture(
                source, skills, plan, staging_dir, allowed_roots=allowed_roots,
                allowed_protocols=allowed_protocols, progress=progress,
                on_bad_record=on_bad_record, shard_batches=shard_batches, audit=audit,
                tolerance=tolerance, plots=plots, exports=exports,
            )  # fmt: skip
        except AuditFailed:  # everything is written, audit included: upload it too
            remote.finish_upload(staging_dir, target)
            raise
        remote.finish_upload(staging_dir, target)
        return built
    report = progress or (lambda fraction, message: None)
    report(0.0, "validating corpus")
    specs = {s.id: s for s in (SkillSpec.model_validate(s) for s in skills)}
    files = validate_corpus(source, allowed_roots, allowed_protocols)
    current = fingerprint(files)
    _check_corpus(plan, current)
    out_dir = _output_dir(out_dir, allowed_roots)
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        manifest = read_manifest(out_dir)
        if not _same(manifest["plan"], plan.to_dict()):
            raise ValueError(f"{out_dir} holds a different mixture; use a new output directory")
        if set(exports) - set(manifest.get("exports") or {}):
            manifest = _with_exports(out_dir, manifest, exports, report)
            write_json(manifest_path, manifest, indent=1)
    else:
        manifest = _write(
            out_dir, files, current, source, plan, specs, on_bad_record, shard_batches, report
        )
        manifest = _with_exports(out_dir, manifest, exports, report)
        write_json(manifest_path, manifest, indent=1)
    shutil.rmtree(os.path.join(out_dir, BUILD_DIR), ignore_errors=True)
    remove_temporaries(out_dir)
    result: dict[str, Any] = {"plan": manifest["plan"], "manifest": manifest, "audit": None}
    if audit:
        found = audit_mixture(
            out_dir,
            list(specs.values()),
            tolerance,
            progress=report,
            progress_range=(WRITE_END, 1.0),
            plots=plots,
        )
        result["audit"] = found
        if not found["passed"]:
            raise AuditFailed(found)
    report(1.0, "mixture done")
    return result


def _with_exports(
    out_dir: str, manifest: dict[str, Any], exports: Sequence[str], report: Progress
) -> dict[str, Any]:
    """The manifest with `order` and the exports (written now, those it lacks)."""
    if exports:
        report(WRITE_END, f"exporting {', '.join(exports)}")
    return {**manifest, "order": ORDER, "exports": export_mixture(out_dir, manifest, exports)}


def _write(
    out_dir: str,
    files: list[str],
    corpus_fingerprint: dict[str, Any],
    source: CorpusSource,
    plan: MixturePlan,
    specs: Mapping[str, SkillSpec],
    on_bad_record: BadRecordPolicy,
    shard_batches: int | None,
    report: Progress,
) -> dict[str, Any]:
    def reader() -> CorpusReader:
        return CorpusReader(files, source.format, source.text_key, source.id_key, on_bad_record)

    pool = _repeat_pool(out_dir, files, reader, plan, specs, report)
    writer = MixtureWriter(
        out_dir,
        plan,
        list(specs.values()),
        pool,
        shard_batches,
        progress=report,
        progress_range=(POOL_END if pool else 0.0, WRITE_END),
    )
    for _ in writer.run(reader().run()):
        pass
    assert writer.result is not None
    plan.tokenizer.copy_into(out_dir)
    return build_manifest(plan, specs, source, corpus_fingerprint, writer.result, plan.tokenizer)
