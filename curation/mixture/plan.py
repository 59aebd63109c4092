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

Shared rows: a batch with more placements C than sequences S packs them C/S to a row,
rounded up (`schedule.per_row`), so each placement may take seq_len // that many tokens
(its share of a row); `check_shared_rows` refuses the plan, with the numbers, when a
dosed skill's placements are longer than that (a synthesized skill's longest sampled
instance, a repeated document's instance). The build packs by real lengths
(`schedule.shared_rows`) and leaves repeated documents longer than the share out of the
pool (`MixturePlan.slot_tokens`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from curation.mixture import schedule
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

__all__ = ["MixturePlan", "PlanError", "SkillPlan", "check_shared_rows", "plan_mixture", "seed_int"]

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

    @property
    def per_row(self) -> int:
        """Placements sharing one row in the busiest batch (1: each starts its own row)."""
        return schedule.per_row(self.busiest_batch, self.seqs_per_batch)

    @property
    def slot_tokens(self) -> int:
        """Tokens a placement of the busiest batch can take without pushing the next one:
        its share of the batch's rows, or of a shared row."""
        busiest = max(1, self.busiest_batch)
        if busiest <= self.seqs_per_batch:
            return self.seqs_per_batch // busiest * self.dosing.seq_len
        return self.dosing.seq_len // self.per_row

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
    labels = {sid: skill_label(sid, specs[sid].name) for sid in skill_plans}
    if not check_shared_rows(counts, skill_plans, plan, labels):
        for sid, skill in skill_plans.items():  # plans that share no row read as before
            skill_plans[sid] = replace(skill, longest_instance_tokens=None)
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


def _placement_bound(skill: SkillPlan) -> tuple[int, str]:
    """Tokens a skill's placements take at most (as far as the plan knows), and what that is."""
    if skill.longest_instance_tokens is not None:
        return skill.longest_instance_tokens + 1, "its longest sampled instance and EOS"
    tokens = math.ceil(skill.mean_instance_tokens) + 1
    if skill.source == "repeat":
        return tokens, "a repeated document holds at least an instance (mean length) and EOS"
    return tokens, "its mean instance and EOS"


def check_shared_rows(
    counts: Mapping[str, np.ndarray],
    skills: Mapping[str, SkillPlan],
    dosing: DosingPlan,
    labels: Mapping[str, str] | None = None,
) -> bool:
    """Whether some batch has more placements than sequences (so placements share rows);
    PlanError when a skill placed in such a batch has placements longer than their share
    of a row, seq_len // ceil(C / S) tokens (`_placement_bound`), naming the numbers."""
    seqs, seq_len = dosing.batch_tokens // dosing.seq_len, dosing.seq_len
    n_batches = len(next(iter(counts.values()), ()))
    total = np.zeros(n_batches, dtype=np.int64)
    for skill_counts in counts.values():
        total += skill_counts
    shared = total > seqs
    for sid, skill_counts in counts.items():
        batches = np.flatnonzero(shared & (skill_counts > 0))
        if not batches.size:
            continue
        batch = int(batches[total[batches].argmax()])
        per_row = schedule.per_row(int(total[batch]), seqs)
        share = seq_len // per_row
        tokens, what = _placement_bound(skills[sid])
        if tokens > share:
            fit = seq_len // tokens
            label = (labels or {}).get(sid) or skill_label(sid, None)
            raise PlanError(
                f"batch {batch} would get {int(total[batch]):,} placements but has only "
                f"{seqs:,} sequences of {seq_len:,} tokens: sharing rows, {per_row} to a row, "
                f"leaves {share:,} tokens a placement, and the placements of {label} take "
                f"{tokens:,} ({what}), so a row holds {fit} of them and a batch at most "
                f"{seqs * fit:,}; lower the targets or raise batch_tokens"
            )
    return bool(shared.any())
