"""Merging per-rank frequency partials into the scan's frequency report.

Field names are the contract of DESIGN.md "Frequency report". Extra keys that
are not part of the contract (`per_batch_ci95`, `instance_tokens`,
`gap_histogram`) carry what plots and later steps need.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datatrove.io import DataFolderLike

from curation import stats
from curation.steps.frequency import decode_positions, read_partials


@dataclass
class ScanReport:
    """The merged report: per-skill frequency reports plus corpus totals."""

    skills: dict[str, dict[str, Any]]
    corpus: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"skills": self.skills, "corpus": self.corpus, **self.extra}


def _file_totals(
    partials: list[dict[str, Any]], files_in_order: list[str]
) -> dict[str, dict[str, int]]:
    """docs and bytes per file, in corpus order, from whichever rank read each file."""
    totals: dict[str, dict[str, int]] = {path: {"docs": 0, "bytes": 0} for path in files_in_order}
    seen: dict[str, int] = {}
    for partial in partials:
        for path, counts in partial["files"].items():
            if path not in totals:
                raise ValueError(
                    f"partial of rank {partial['rank']} has {path}, which is not in the corpus"
                )
            if path in seen:
                raise ValueError(f"{path} was read by ranks {seen[path]} and {partial['rank']}")
            seen[path] = partial["rank"]
            totals[path] = {"docs": counts["docs"], "bytes": counts["bytes"]}
    return totals


def _skill_report(
    sid: str,
    partials: list[dict[str, Any]],
    files: dict[str, dict[str, int]],
    offsets: dict[str, int],
    batch_tokens: int,
    bytes_per_token: float,
) -> dict[str, Any]:
    keys: Counter = Counter()
    per_file: dict[str, dict[str, Any]] = {}
    for partial in partials:
        skill = partial["skills"].get(sid)
        if skill:
            keys.update(skill["keys"])
            per_file.update(skill["files"])
    chunks = [
        offsets[p] + decode_positions(per_file[p]["positions"]) for p in files if p in per_file
    ]
    positions = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    positions = positions / bytes_per_token if bytes_per_token != 1.0 else positions
    docs = sum(f["docs"] for f in files.values())
    total_bytes = sum(f["bytes"] for f in files.values())
    tokens = total_bytes / bytes_per_token
    instances = int(positions.size)
    matched = sum(c["matched_docs"] for c in per_file.values())
    instance_bytes = sum(c["instance_bytes"] for c in per_file.values())
    rate, rate_ci = stats.rate_per_million(instances, tokens)
    gap_tokens, gap_batches = stats.gap_stats(positions, batch_tokens)
    by_file = []
    for path, f in files.items():
        c = per_file.get(path, {})
        n = c.get("instances", 0)
        f_tokens = f["bytes"] / bytes_per_token
        by_file.append(
            {
                "file": path,
                "docs_scanned": f["docs"],
                "tokens_scanned": round(f_tokens),
                "matched_docs": c.get("matched_docs", 0),
                "instances": n,
                "probe_collisions": c.get("probe_collisions", 0),
                "per_million_tokens": stats.rate_per_million(n, f_tokens)[0],
            }
        )
    return {
        "docs_scanned": docs,
        "tokens_scanned": round(tokens),
        "matched_docs": matched,
        "instances": instances,
        "unique_instances": len(keys),
        "max_repeats": max(keys.values(), default=0),
        "doc_fraction": matched / docs if docs else 0.0,
        "token_fraction": instance_bytes / total_bytes if total_bytes else 0.0,
        "instance_tokens": instance_bytes / bytes_per_token,
        "per_million_tokens": rate,
        "per_million_tokens_ci95": rate_ci,
        "per_batch": stats.per_batch(instances, tokens, batch_tokens),
        "per_batch_ci95": [x * batch_tokens / 1e6 for x in rate_ci],
        "gap_tokens": gap_tokens,
        "gap_batches": gap_batches,
        "gap_histogram": stats.log_histogram(stats.gaps(positions)),
        "probe_collisions": sum(c["probe_collisions"] for c in per_file.values()),
        "by_file": by_file,
    }


def merge_partials(
    folder: DataFolderLike,
    files_in_order: list[str],
    batch_tokens: int,
    bytes_per_token: float = 1.0,
    skill_ids: list[str] | None = None,
) -> ScanReport:
    """Frequency report per skill from the partials SkillFrequencyStats wrote to `folder`.

    files_in_order: the corpus files in corpus order (as validate_corpus gives
        them); positions are placed in that order, whichever rank read a file.
    bytes_per_token: 1.0 for byte-level tokens; a calibrated ratio turns byte
        counts and positions into estimated tokenizer tokens.
    skill_ids: skills to report even if no partial mentions them.
    """
    if batch_tokens <= 0:
        raise ValueError("batch_tokens must be positive")
    partials = read_partials(folder)
    files = _file_totals(partials, files_in_order)
    offsets, running = {}, 0
    for path, f in files.items():
        offsets[path] = running
        running += f["bytes"]
    sids = list(dict.fromkeys([*(skill_ids or []), *(s for p in partials for s in p["skills"])]))
    skills = {
        sid: _skill_report(sid, partials, files, offsets, batch_tokens, bytes_per_token)
        for sid in sids
    }
    corpus = {
        "files": len(files),
        "docs_scanned": sum(f["docs"] for f in files.values()),
        "bytes_scanned": running,
        "tokens_scanned": round(running / bytes_per_token),
        "batch_tokens": batch_tokens,
        "tasks": len(partials),
    }
    return ScanReport(skills=skills, corpus=corpus)
