"""One skill of a plan: its source, schedule, cap check, numbers and warnings. Pure.

Counts are in placements: a synthesized instance, or a whole repeated document.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curation.mixture import schedule
from curation.mixture.danger import (
    DANGER_EXPOSURES,
    DANGER_REPEATED_SHARE,
    repetition_warnings,
    skill_label,
    warning,
)
from curation.mixture.models import DosingPlan, SkillDose
from curation.mixture.supply import train_split_size
from curation.mixture.tokenizer import BYTES, MixtureTokenizer
from curation.skills.matcher import SkillMatcher
from curation.skills.probes import sample_instances
from curation.skills.spec import SkillSpec, definition_digest

SAMPLE_INSTANCES = 200
"""Generated instances sampled to measure a synthesized skill's mean length."""


class PlanError(ValueError):
    """A plan that cannot be built as asked; the message says what to change."""


def seed_int(seed: int, *parts: str) -> int:
    """A 64-bit seed for one purpose, derived from the mixture seed (stable everywhere)."""
    text = "/".join(["skillmix/mixture", str(seed), *parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def placement_streams(sids: Sequence[str], specs: Mapping[str, SkillSpec]) -> dict[str, str]:
    """Per skill of a plan, what keys its random choices besides the mixture seed.

    A skill's definition digest, not its id: re-registering a skill (a new id or name,
    same definition) gives the same schedule, instances and placements. A definition
    that comes back in the same plan gets `/2`, `/3`... in plan order, so two skills
    that share a definition still draw apart.
    """
    seen: Counter[str] = Counter()
    streams = {}
    for sid in sids:
        digest = definition_digest(specs[sid])
        seen[digest] += 1
        streams[sid] = digest if seen[digest] == 1 else f"{digest}/{seen[digest]}"
    return streams


@dataclass
class SkillPlan:
    """The resolved dose of one skill, with the numbers the build will produce."""

    target: dict[str, Any]
    source: str
    source_requested: str
    spacing: str
    max_repeats: int
    version: int
    per_batch: float
    placements: int
    planned_per_batch: float
    batches_dosed: int
    max_per_batch: int
    mean_instance_tokens: float
    placement_tokens: float
    unique_available: int
    unique_available_exact: bool
    capacity: int
    unique_used: int
    new_instances: int
    copies_per_unique: dict[str, float]
    exposures_per_unique: float
    token_share: float
    inserted_tokens: float
    natural: dict[str, Any]
    placement_stream: str
    """Seeds, with the mixture seed, the skill's schedule, instances and repeats."""
    pool_size: int | None = None
    """synthesize: the fixed pool of unique train instances placements are drawn from
    (then `unique_available`); None: the whole train split."""
    longest_instance_tokens: int | None = None
    """synthesize, in a plan whose batches share rows: the longest of the sampled instances
    (tokens, without EOS), which must fit in a placement's share of a row
    (`plan.check_shared_rows`); None otherwise."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("pool_size", "longest_instance_tokens"):
            if out[name] is None:  # plans without them read as they always did
                del out[name]
        return out


def _scaled(summary: dict | None, factor: float) -> dict | None:
    if summary is None:
        return None
    return {k: (v * factor if k != "cv" and v is not None else v) for k, v in summary.items()}


def scan_scale(corpus: dict[str, Any]) -> float:
    """Mixture tokens per scan token: the scan's bytes per token for a byte-level mixture
    (a calibrated scan is converted back to bytes), 1 for an hf mixture (whose scan counted
    in its own tokenizer)."""
    return 1.0 if "tokenizer_sha256" in corpus else corpus["bytes_per_token"]


def _natural(scan: Mapping[str, Any], corpus: dict[str, Any], batch_tokens: int) -> dict:
    """The corpus' own instances of a skill, in the mixture's units (tokens + EOS)."""
    bpt = scan_scale(corpus)
    histogram = scan.get("gap_histogram")
    if histogram:
        histogram = {**histogram, "edges": [e * bpt for e in histogram["edges"]]}
    return {
        "instances": scan.get("instances", 0),
        "unique_instances": scan.get("unique_instances", 0),
        "max_repeats": scan.get("max_repeats", 0),
        "per_batch": scan.get("instances", 0) * batch_tokens / max(1, corpus["tokens"]),
        "token_fraction": scan.get("token_fraction", 0.0),
        "probe_collisions": scan.get("probe_collisions", 0),
        "gap_tokens": _scaled(scan.get("gap_tokens"), bpt),
        "gap_histogram": histogram,
    }


def _mean_length(
    sid: str,
    spec: SkillSpec,
    source: str,
    scan: Mapping,
    seed: int,
    stream: str,
    bpt: float,
    tokenizer: MixtureTokenizer = BYTES,
) -> tuple[float, int | None]:
    """Mean instance length in tokens, and (synthesize) the longest sampled one; for
    synthesize, check that the detector sees instances."""
    label = skill_label(sid, spec.name)
    if source == "repeat":
        if not scan.get("instances"):
            fix = "use source=synthesize" if spec.generator else "add a generator to the skill"
            raise PlanError(f"{label}: the corpus has no instance to repeat; {fix}")
        return scan["instance_tokens"] * bpt / scan["instances"], None
    samples = sample_instances(spec, SAMPLE_INSTANCES, seed=seed_int(seed, "sample", stream))
    matcher = SkillMatcher([spec])
    missed = [i for i in samples if not matcher.find(i.text).get(sid)]
    if missed:
        raise PlanError(
            f"{label}: its detector finds {len(samples) - len(missed)} of {len(samples)} "
            f"generated train instances (e.g. not {missed[0].text!r}), so the audit could not "
            "see what the build places; fix the detector or the generator's template"
        )
    if tokenizer.is_bytes:
        lengths = [len(i.text.encode()) for i in samples]
    else:
        lengths = [len(ids) for ids in tokenizer.encode_batch([i.text for i in samples])]
    return sum(lengths) / len(lengths), max(lengths)


def schedule_counts(
    dose: SkillDose, rate: float, n_batches: int, seed: int, stream: str
) -> np.ndarray:
    """A skill's per-batch placements: fixed by `every` and `uniform`, drawn from (seed,
    stream) for `random` and `clustered` spacing."""
    target = dose.target
    if target.every is not None:
        return schedule.every_counts(target.every.n, target.every.k, n_batches)
    rng = np.random.default_rng(seed_int(seed, "schedule", stream))
    if dose.spacing == "random":
        return schedule.random_counts(rate, n_batches, rng)
    if dose.spacing == "clustered":
        return schedule.clustered_counts(rate, n_batches, rng)
    return schedule.uniform_counts(rate, n_batches)


def plan_skill(
    sid: str,
    dose: SkillDose,
    spec: SkillSpec,
    scan: Mapping[str, Any],
    plan: DosingPlan,
    corpus: dict[str, Any],
    n_batches: int,
    stream: str,
    danger_exposures: float = DANGER_EXPOSURES,
    danger_repeated_share: float = DANGER_REPEATED_SHARE,
    tokenizer: MixtureTokenizer = BYTES,
) -> tuple[SkillPlan, np.ndarray, list[dict[str, Any]]]:
    """One skill's resolved dose, its per-batch schedule, and its warnings.

    `stream` keys the skill's random choices (`placement_streams`)."""
    label = skill_label(sid, spec.name)
    source = dose.source
    if source == "auto":
        source = "synthesize" if spec.generator is not None else "repeat"
    if source == "synthesize" and spec.generator is None:
        raise PlanError(
            f"{label}: source=synthesize needs a generator, and the skill has none; "
            "add a generator to the skill or use source=repeat"
        )
    mean, longest = _mean_length(
        sid, spec, source, scan, plan.seed, stream, scan_scale(corpus), tokenizer
    )
    target = dose.target
    if target.every is not None:
        rate = target.every.n / target.every.k
    else:
        rate = target.per_batch or (target.fraction or 0.0) * plan.batch_tokens / mean
    counts = schedule_counts(dose, rate, n_batches, plan.seed, stream)
    n = int(counts.sum())
    if n == 0:
        raise PlanError(
            f"{label}: {rate:.3g} per batch over {n_batches} batches places nothing; "
            "raise the target or use a longer mixture"
        )
    m = dose.max_repeats
    if dose.pool_size is not None and source != "synthesize":
        raise PlanError(
            f"{label}: pool_size draws a fixed pool of generated instances, but the skill "
            "has no generator (source=auto resolved to repeat); drop pool_size"
        )
    if source == "synthesize":
        split = train_split_size(spec)
        available, exact, natural_copies = split.size, split.exact, 0.0
        placement_tokens = mean + 1
        advice = "raise max_repeats, use a generator with more instances, or lower the target"
        what = f"the generator's train split has {available:,} instances"
        if dose.pool_size is not None:
            available, exact = _pool(label, dose.pool_size, split.size, split.exact), True
            least = math.ceil(n / available)
            advice = (
                f"raise max_repeats to at least {least:,}, raise pool_size to at least "
                f"{math.ceil(n / m):,}, or lower the target"
            )
            what = f"a pool of pool_size={available:,} unique instances"
    else:
        available, exact = int(scan["unique_instances"]), True
        natural_copies = scan["instances"] / available
        placement_tokens = max(mean + 1, corpus["tokens"] / max(1, corpus["docs"]))
        advice = "raise max_repeats, " + ("use source=synthesize, " if spec.generator else "")
        advice += "or lower the target"
        what = f"the corpus has {available:,} unique instances"
    if n > available * m:
        raise PlanError(
            f"{label}: {what}; {n:,} placements at max_repeats={m} can place at most "
            f"{available * m:,}; {advice}"
        )
    unique_used = min(n, available)
    copies = n / unique_used
    repeated = (n - unique_used if source == "synthesize" else n) * placement_tokens
    warnings = repetition_warnings(
        sid,
        natural_copies + copies,
        unique_used,
        repeated,
        n_batches * plan.batch_tokens,
        danger_exposures,
        danger_repeated_share,
        name=spec.name,
    )
    natural = _natural(scan, corpus, plan.batch_tokens)
    if natural["probe_collisions"]:
        warnings.append(
            warning(
                "probe_collisions",
                f"{label}: the corpus holds {natural['probe_collisions']} instances of the "
                "probe (held-out) set; they stay in the mixture at their natural places and "
                "are never repeated, but they leak the held-out set into training",
                sid,
                value=natural["probe_collisions"],
            )
        )
    skill_plan = SkillPlan(
        target=dose.target.model_dump(exclude_none=True),
        source=source,
        source_requested=dose.source,
        spacing="every" if target.every is not None else dose.spacing,
        max_repeats=m,
        version=spec.version,
        per_batch=rate,
        placements=n,
        planned_per_batch=n / n_batches,
        batches_dosed=int(np.count_nonzero(counts)),
        max_per_batch=int(counts.max()),
        mean_instance_tokens=mean,
        placement_tokens=placement_tokens,
        unique_available=available,
        unique_available_exact=exact,
        capacity=available * m,
        unique_used=unique_used,
        new_instances=unique_used if source == "synthesize" else 0,
        copies_per_unique={"mean": copies, "max": math.ceil(copies)},
        exposures_per_unique=natural_copies + copies,
        token_share=n * mean / (n_batches * plan.batch_tokens),
        inserted_tokens=n * placement_tokens,
        natural=natural,
        placement_stream=stream,
        pool_size=dose.pool_size,
        longest_instance_tokens=longest,
    )
    return skill_plan, counts, warnings


def _pool(label: str, pool_size: int, train: int, exact: bool) -> int:
    """The pool's size, once it is known to fit in the train split (of `train` instances,
    an estimate unless `exact`)."""
    if pool_size > train:
        about = "" if exact else "about "
        raise PlanError(
            f"{label}: pool_size={pool_size:,} is larger than the generator's train split "
            f"({about}{train:,} instances), so the pool cannot hold that many unique "
            "instances; lower pool_size (or drop it to draw from the whole train split)"
        )
    return pool_size
