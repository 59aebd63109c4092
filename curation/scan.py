"""run_scan: profile a corpus against skills with datatrove, then merge the report.

Work directory layout (keep it to resume: completed ranks are skipped):
  scan.json      what this scan is (source, tasks, skills, fingerprint)
  logs/          datatrove logging_dir (completions/ markers, stats, task logs)
  partials/      one frequency partial per rank
  state/         one progress/bad-record file per rank
  report.json, rates.png, gaps.png
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.base import PipelineExecutor
from datatrove.pipeline.base import PipelineStep

from curation.atomic import write_json_atomic
from curation.corpus import CorpusSource, compare_fingerprints, fingerprint, validate_corpus
from curation.pipelines import scan_pipeline
from curation.scan_plots import draw_scan_plots
from curation.scan_report import merge_partials
from curation.sources.reader import BadRecordPolicy, rank_state_path
from curation.sources.records import ScanInputError, progress_total
from curation.sources.tokens import TokenCounter, token_unit

Progress = Callable[[float, str], None]
ExecutorFactory = Callable[..., PipelineExecutor]
SCAN_SHARE = 0.9  # of the progress bar; validation, merge and plots share the rest


def _skill_id(skill: Any) -> str:
    for attr in ("id", "skill_id"):
        value = skill.get(attr) if isinstance(skill, Mapping) else getattr(skill, attr, None)
        if value is not None:
            return str(value)
    raise ValueError(f"cannot tell the id of skill {skill!r}; pass skill_ids=")


def _probe_digest(probe_keys: Mapping[str, Iterable[str]] | None) -> str:
    canonical = json.dumps(
        {sid: sorted(keys) for sid, keys in (probe_keys or {}).items()}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record_run(workdir: str, identity: dict[str, Any]) -> None:
    """Store what this scan is; on resume, refuse if the corpus or the setup changed."""
    path = os.path.join(workdir, "scan.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        diff = compare_fingerprints(previous["fingerprint"], identity["fingerprint"])
        if diff.changed:
            raise ScanInputError(
                f"the corpus changed since this scan started ({diff.describe()}); "
                "start the scan again in a new work directory"
            )
        for key in ("source", "tasks", "skill_ids", "probe_keys_sha256"):
            if previous[key] != identity[key]:
                raise ValueError(
                    f"{workdir} holds a scan with {key}={previous[key]!r}, not {identity[key]!r}; "
                    "use a new work directory"
                )
    write_json_atomic(path, identity)


def _read_states(state_dir: str, tasks: int) -> list[dict[str, Any]]:
    states = []
    for rank in range(tasks):
        try:
            with open(rank_state_path(state_dir, rank)) as f:
                states.append(json.load(f))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return states


def _progress_message(done: int, total: int, unit: str, docs: int) -> str:
    """E.g. "scanned 120.5 / 400.0 MB, 40,123 documents" (MB of the files, compressed or not)."""
    amount = (
        f"{done / 1e6:,.1f} / {total / 1e6:,.1f} MB"
        if unit == "bytes"
        else f"{done:,} / {total:,} {unit}"
    )
    return f"scanned {amount}, {docs:,} documents"


def _run_executor(
    executor: PipelineExecutor,
    tasks: int,
    state_dir: str,
    cancel_file: str,
    total: int,
    unit: str,
    progress: Progress,
    poll: float,
) -> None:
    """Run the executor in a thread; report progress from rank state files on this thread.

    The callback is only ever called on the caller's thread. If it raises (for
    instance because the job was cancelled), a cancel marker makes the running
    ranks stop at their next state flush, and the callback's exception is
    re-raised once they have stopped.
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            executor.run()
        except BaseException as e:  # re-raised on the caller's thread
            failure.append(e)

    # In the caller's context (contextvars), so what it logs is tagged like the caller's logs.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(target,), name="skillmix-scan", daemon=True
    )
    thread.start()
    while thread.is_alive() or (not failure and executor.get_incomplete_ranks()):
        thread.join(poll)
        states = _read_states(state_dir, tasks)
        done = sum(s["units_done"] for s in states)
        fraction = min(1.0, done / total) if total else 0.0
        docs = sum(s["docs"] for s in states)
        try:
            progress(SCAN_SHARE * fraction, _progress_message(done, total, unit, docs))
        except BaseException:
            open(cancel_file, "w").close()
            cancel = getattr(executor, "cancel", None)
            if cancel is not None:  # a cluster's queued jobs would never see the marker
                cancel()
            thread.join()
            raise
    if failure:
        raise failure[0]


def run_scan(
    source: CorpusSource,
    skills: Sequence[Any],
    workdir: str,
    *,
    allowed_roots: list[str],
    allowed_protocols: set[str] | None = None,
    batch_tokens: int = 262144,
    tasks: int = 1,
    workers: int = 1,
    executor_factory: ExecutorFactory | None = None,
    progress: Progress | None = None,
    probe_keys: Mapping[str, Iterable[str]] | None = None,
    on_bad_record: BadRecordPolicy = "fail",
    tokens: str | TokenCounter = "bytes",
    skill_ids: list[str] | None = None,
    tagger: PipelineStep | None = None,
    plots: bool = True,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Scan `source` for `skills`; returns the report dict (also written to workdir/report.json).

    The source is validated again (paths may have changed since it was
    registered). `executor_factory(pipeline=, tasks=, workers=, logging_dir=)`
    builds the datatrove executor (default LocalPipelineExecutor); it is the
    only place the executor is chosen. Re-running with the same workdir skips
    completed ranks. `tokens` is "bytes" (1 token per UTF-8 byte), a local
    tokenizer path, or a function counting a text's tokens (a ratio is then
    calibrated on a sample). Raises ScanInputError for bad input (with file and
    line) unless on_bad_record="skip", which drops and counts bad records.
    `plots` draws rates.png and gaps.png into workdir before returning (seconds for
    50 skills); the service passes False and draws them from the stored report
    afterwards (curation.scan_plots.draw_scan_plots).
    """
    report_progress = progress or (lambda fraction, message: None)
    report_progress(0.0, "validating corpus")
    files = validate_corpus(source, allowed_roots, allowed_protocols)
    sids = skill_ids if skill_ids is not None else [_skill_id(s) for s in skills]
    dirs = {name: os.path.join(workdir, name) for name in ("logs", "partials", "state")}
    for folder in dirs.values():
        os.makedirs(folder, exist_ok=True)
    cancel_file = os.path.join(workdir, "CANCEL")
    if os.path.exists(cancel_file):
        os.remove(cancel_file)
    corpus_fingerprint = fingerprint(files)
    _record_run(
        workdir,
        {
            "source": source.to_dict(),
            "tasks": tasks,
            "skill_ids": sids,
            "probe_keys_sha256": _probe_digest(probe_keys),
            "fingerprint": corpus_fingerprint,
        },
    )
    unit = token_unit(tokens, files, source.format, source.text_key)
    total, total_unit = progress_total(files, source.format)
    pipeline = scan_pipeline(
        source,
        files,
        skills,
        dirs["partials"],
        skill_ids=sids,
        probe_keys=probe_keys,
        on_bad_record=on_bad_record,
        state_dir=dirs["state"],
        cancel_file=cancel_file,
        tagger=tagger,
    )
    factory = executor_factory or LocalPipelineExecutor
    executor = factory(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=dirs["logs"])
    _run_executor(
        executor,
        tasks,
        dirs["state"],
        cancel_file,
        total,
        total_unit,
        report_progress,
        poll_seconds,
    )
    report_progress(SCAN_SHARE, "merging partial results")
    report = merge_partials(dirs["partials"], files, batch_tokens, unit["bytes_per_token"], sids)
    states = _read_states(dirs["state"], tasks)
    report.corpus.update(
        {
            "source": source.to_dict(),
            "token_unit": unit,
            "bad_records": sum(s["bad_records"] for s in states),
            "bad_examples": [e for s in states for e in s["bad_examples"]][:20],
            "fingerprint": corpus_fingerprint,
        }
    )
    for skill in skills:  # names make the report and its plots readable
        name = skill.get("name") if isinstance(skill, Mapping) else getattr(skill, "name", None)
        if name and _skill_id(skill) in report.skills:
            report.skills[_skill_id(skill)]["name"] = name
    if plots:
        report_progress(0.95, "drawing plots")
        report.extra["artifacts"] = draw_scan_plots(report.to_dict(), workdir)
    result = report.to_dict()
    write_json_atomic(os.path.join(workdir, "report.json"), result)
    report_progress(1.0, "scan done")
    return result
