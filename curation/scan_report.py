"""Merging per-rank frequency partials into the scan's frequency report.

Field names are the contract of DESIGN.md "Frequency report". Extra keys that
are not part of the contract (`per_batch_ci95`, `instance_tokens`,
`gap_histogram`) carry what plots and later steps need.

`per_million_tokens_ci95` allows for instances clustering within documents
(curation.stats.clustered_rate_per_million); the exact Poisson
interval, which assumes independent instances, is `per_million_tokens_poisson_ci95`.
`rate_interval` says how the first was made: the method, the unit (documents),
the dispersion, and the dispersion between files, reported but not applied.
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
    totals = {path: {"docs": 0, "bytes": 0, "bytes_sq": 0} for path in files_in_order}
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
            totals[path] = {k: counts[k] for k in ("docs", "bytes", "bytes_sq")}
    return totals


def _rate_interval(
    instances: int,
    tokens: float,
    files: dict[str, dict[str, int]],
    per_file: dict[str, dict[str, Any]],
) -> tuple[float, list[float], dict[str, Any]]:
    """The rate, its clustering-aware interval, and how it was made.

    The dispersion applied is the documents' (curation.stats.cluster_dispersion,
    document length as exposure). Documents of one file may share a source and
    cluster together too: `file_dispersion` is the same statistic with files as
    units, reported, not applied (a corpus has few files, so it is a noisy
    estimate; its df says how noisy). Both are free of the token unit: lengths in
    bytes or in tokens give the same ratio.
    """
    doc_phi = stats.cluster_dispersion(
        instances,
        sum(f["bytes"] for f in files.values()),
        sum(c["instances_sq"] for c in per_file.values()),
        sum(c["instances_x_bytes"] for c in per_file.values()),
        sum(f["bytes_sq"] for f in files.values()),
        sum(f["docs"] for f in files.values()),
    )
    sized = {p: f["bytes"] for p, f in files.items() if f["bytes"] > 0}
    counts = {p: per_file[p]["instances"] if p in per_file else 0 for p in sized}
    file_phi = stats.cluster_dispersion(
        instances,
        sum(sized.values()),
        sum(n * n for n in counts.values()),
        sum(counts[p] * b for p, b in sized.items()),
        sum(b * b for b in sized.values()),
        len(sized),
    )
    rate, ci, applied = stats.clustered_rate_per_million(instances, tokens, doc_phi)
    return (
        rate,
        ci,
        {
            "method": stats.RATE_INTERVAL_METHOD,
            "unit": "document",
            "dispersion": doc_phi,
            "dispersion_applied": applied,
            "effective_instances": instances / applied,
            "file_dispersion": file_phi,
            "files": len(sized),
        },
    )


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
    rate, rate_ci, interval = _rate_interval(instances, tokens, files, per_file)
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
        "per_million_tokens_poisson_ci95": stats.rate_per_million(instances, tokens)[1],
        "rate_interval": interval,
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
