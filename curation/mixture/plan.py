"""plan_mixture: from a scan report, skills and a dosing plan to the numbers of a mixture.

Pure: no file is read or written. Every number the build will honour is fixed
here (the per-batch schedule of each skill, its source, its cap), and every
reason the plan cannot be built is a PlanError, raised before any work.

Length rule: the mixture is as long as the corpus, in whole batches (or
`max_batches`, whichever is shorter). Placed instances are inserted into the
corpus stream, so they push corpus text later and the same number of corpus
tokens falls off the end: `estimates.corpus_tokens_dropped` says how many.
Token counts are in the mixture's tokenizer with one EOS per document
(docs/mixture-format.md). Byte-level: a scan measured in a calibrated tokenizer's unit
is converted back to bytes. A Hugging Face tokenizer: the scan must have counted in the
same tokenizer (same sha256); its corpus length is then an estimate (the calibrated
bytes per token), so the mixture is planned TOKEN_MARGIN shorter than the estimate's
lower bound and the build never runs out of corpus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.mixture.danger import (
    DANGER_EXPOSURES,
    DANGER_REPEATED_SHARE,
    skill_label,
    warning,
)
from curation.mixture.models import DosingPlan
from curation.mixture.skill_plan import (
    PlanError,
    SkillPlan,
    placement_streams,
    plan_skill,
    seed_int,
)
from curation.mixture.tokenizer import BYTES, MixtureTokenizer, load_tokenizer
from curation.skills.spec import SkillSpec

__all__ = ["MixturePlan", "PlanError", "SkillPlan", "plan_mixture", "seed_int"]

TOKEN_MARGIN = 0.02
"""An hf mixture uses at most (1 - TOKEN_MARGIN) of the corpus' token estimate's lower
bound (4 standard errors of the calibrated bytes per token)."""


@dataclass
class MixturePlan:
    """What plan_mixture decided; `counts[skill_id]` is the per-batch schedule."""

    dosing: DosingPlan
    n_batches: int
    corpus: dict[str, Any]
    skills: dict[str, SkillPlan]
    counts: dict[str, np.ndarray] = field(repr=False)
    warnings: list[dict[str, Any]]
    corpus_fingerprint: dict[str, Any] | None = field(default=None, repr=False)
    tokenizer: MixtureTokenizer = field(default=BYTES, repr=False)

    @property
    def seqs_per_batch(self) -> int:
        return self.dosing.batch_tokens // self.dosing.seq_len

    @property
    def tokens(self) -> int:
        return self.n_batches * self.dosing.batch_tokens

    @property
    def busiest_batch(self) -> int:
        """Most placements (all skills) in one batch."""
        totals = np.zeros(self.n_batches, dtype=np.int64)
        for counts in self.counts.values():
            totals += counts
        return int(totals.max(initial=0))

    def to_dict(self) -> dict[str, Any]:
        inserted = sum(s.inserted_tokens for s in self.skills.values())
        used = self.tokens - inserted
        tokenizer = {}
        if self.dosing.tokenizer.kind != "bytes":  # byte-level plans stay as they were
            tokenizer = {"tokenizer": self.dosing.tokenizer.model_dump(exclude_none=True)}
        return {
            **self.dosing.model_dump(exclude={"skills", "tokenizer"}),
            **tokenizer,
            "seqs_per_batch": self.seqs_per_batch,
            "n_batches": self.n_batches,
            "n_sequences": self.n_batches * self.seqs_per_batch,
            "tokens": self.tokens,
            "corpus": self.corpus,
            "estimates": {
                "inserted_tokens": round(inserted),
                "inserted_share": inserted / self.tokens,
                "corpus_tokens_used": round(used),
                "corpus_tokens_dropped": round(self.corpus["tokens"] - used),
            },
            "skills": {sid: s.to_dict() for sid, s in self.skills.items()},
            "warnings": self.warnings,
        }


def _corpus(
    report: Mapping[str, Any], corpus_tokens: int | None, tokenizer: MixtureTokenizer
) -> dict[str, Any]:
    corpus = report.get("corpus", {})
    docs, nbytes = int(corpus.get("docs_scanned", 0)), int(corpus.get("bytes_scanned", 0))
    fingerprint = corpus.get("fingerprint") or {}
    unit = corpus.get("token_unit", {})
    out = {
        "tokens": corpus_tokens if corpus_tokens is not None else nbytes + docs,
        "docs": docs,
        "bytes": nbytes,
        "bytes_per_token": float(unit.get("bytes_per_token", 1.0)),
        "fingerprint_digest": fingerprint.get("digest"),
    }
    if tokenizer.is_bytes:
        return out
    if unit.get("sha256") != tokenizer.sha256:
        what = (
            "in bytes" if unit.get("mode", "bytes") == "bytes"
            else f"with another tokenizer ({unit.get('tokenizer')})"
        )  # fmt: skip
        raise PlanError(
            f"the scan counted tokens {what}, not with this mixture's tokenizer "
            f"({tokenizer.file}); scan the corpus with the same tokenizer, then plan from "
            "that scan"
        )
    if corpus_tokens is None:
        slowest = float(unit.get("bytes_per_token", 1.0)) + 4 * float(unit.get("stderr", 0.0))
        out["tokens"] = int(nbytes / slowest * (1 - TOKEN_MARGIN)) + docs
    out["tokens_estimated"] = corpus_tokens is None
    out["tokenizer_sha256"] = tokenizer.sha256
    return out


def plan_mixture(
    scan_report: Mapping[str, Any],
    skills: Sequence[SkillSpec | Mapping[str, Any]],
    plan: DosingPlan | Mapping[str, Any],
    corpus_tokens: int | None = None,
    *,
    danger_exposures: float = DANGER_EXPOSURES,
    danger_repeated_share: float = DANGER_REPEATED_SHARE,
    tokenizer: MixtureTokenizer | None = None,
) -> MixturePlan:
    """Resolve `plan` against the scan: schedules, sources, caps, estimates and warnings.

    corpus_tokens: length of the corpus stream in tokens with one EOS per document;
        default: the scan's bytes_scanned + docs_scanned (bytes), or the estimate from the
        scan's calibration (hf, see TOKEN_MARGIN).
    tokenizer: the loaded `plan.tokenizer` (loaded here when not given).
    Raises PlanError (a ValueError) when the plan cannot be built as asked.
    """
    plan = plan if isinstance(plan, DosingPlan) else DosingPlan.model_validate(plan)
    specs = {s.id: s for s in (SkillSpec.model_validate(s) for s in skills)}
    if plan.batch_tokens % plan.seq_len:
        raise PlanError(
            f"batch_tokens ({plan.batch_tokens}) must be a multiple of seq_len ({plan.seq_len}): "
            "a batch is a whole number of sequences"
        )
    if tokenizer is None:
        tokenizer = load_tokenizer(plan.tokenizer)
    corpus = _corpus(scan_report, corpus_tokens, tokenizer)
    corpus["batches"] = corpus["tokens"] // plan.batch_tokens
    if corpus["batches"] == 0:
        raise PlanError(
            f"the corpus ({corpus['tokens']:,} tokens) is shorter than one batch of "
            f"{plan.batch_tokens:,} tokens; lower batch_tokens or use a larger corpus"
        )
    n_batches = min(corpus["batches"], plan.max_batches or corpus["batches"])
    warnings: list[dict[str, Any]] = []
    if plan.max_batches and plan.max_batches > corpus["batches"]:
        warnings.append(
            warning(
                "max_batches",
                f"max_batches={plan.max_batches} but the corpus fills only {corpus['batches']} "
                f"batches of {plan.batch_tokens:,} tokens; the mixture has {n_batches}",
                value=plan.max_batches,
                threshold=corpus["batches"],
            )
        )
    for sid in plan.skills:
        if sid not in specs:
            raise PlanError(f"skill {sid} is in the plan but not among the skills given")
    streams = placement_streams(list(plan.skills), specs)
    skill_plans, counts = {}, {}
    for sid, dose in plan.skills.items():
        scan = scan_report.get("skills", {}).get(sid)
        if scan is None:
            raise PlanError(
                f"{skill_label(sid, specs[sid].name)} was not part of the scan; "
                "scan the corpus for it first"
            )
        skill_plans[sid], counts[sid], found = plan_skill(
            sid, dose, specs[sid], scan, plan, corpus, n_batches, streams[sid],
            danger_exposures, danger_repeated_share, tokenizer,
        )  # fmt: skip
        warnings += found
    seqs = plan.batch_tokens // plan.seq_len
    total = np.zeros(n_batches, dtype=np.int64)
    for schedule_counts in counts.values():
        total += schedule_counts
    if int(total.max(initial=0)) > seqs:
        batch = int(total.argmax())
        raise PlanError(
            f"batch {batch} would get {int(total[batch])} placements but has only {seqs} "
            "sequences, and each placement starts its own; lower the targets, raise "
            "batch_tokens or lower seq_len"
        )
    return MixturePlan(
        dosing=plan,
        n_batches=n_batches,
        corpus=corpus,
        skills=skill_plans,
        counts=counts,
        warnings=warnings,
        corpus_fingerprint=scan_report.get("corpus", {}).get("fingerprint"),
        tokenizer=tokenizer,
    )
