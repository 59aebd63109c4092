"""A built mixture's seeded variants: the same plan with another seed's random draws.

A verification whose seeds vary the data (`seed_scope` `data` or `both`, SCIENCE.md
"Measuring retention honestly") trains each seed on a variant of the arm's mixture: the
plan stored in its manifest (targets, sources, caps, spacing, length) with the mixture
seed replaced by `variant_seed(mixture seed, run seed)`, built by the ordinary build
(`build_mixture`) from the same corpus. What a seed changes is exactly what the mixture
seed draws (docs/mixture-format.md, "Seeding"): the synthesized instances (a pooled
skill's pool too: same size, other instances), the repeated documents, the batches of a
`random` or `clustered` schedule and the skills' order inside a batch. The corpus
documents and their order are the plan's; an `every` or `uniform` schedule puts its
placements in the same batches and sequences for every seed, so there a seed draws the
instances (and, as their lengths differ, where the following corpus text falls). Each
skill's draws stay keyed by its definition digest (`placement_stream`), never its id, so
two registrations of one definition give the same variant for the same seed.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from curation.corpus import CorpusSource
from curation.mixture.build import build_mixture
from curation.mixture.manifest import read_manifest
from curation.mixture.models import DosingPlan, SkillDose
from curation.mixture.plan import MixturePlan, PlanError, check_shared_rows
from curation.mixture.skill_plan import SkillPlan, schedule_counts, seed_int
from curation.skills.spec import SkillSpec

Progress = Callable[[float, str], None]
VARIANT_RECORD = "variant.json"
"""Written last into a finished variant's folder: which mixture and seed it varies."""


def variant_seed(mixture_seed: int, run_seed: int) -> int:
    """The mixture seed of run seed `run_seed`'s variant of a mixture seeded `mixture_seed`:
    63 bits of sha256 over both (stable on every machine, independent of skill ids)."""
    return seed_int(mixture_seed, "run", str(run_seed)) >> 1


def places_anything(manifest: Mapping[str, Any]) -> bool:
    """Whether the mixture places any instance (it records a skill): a baseline draws
    nothing from its seed, so every variant of it is the mixture itself."""
    return bool(manifest.get("skills"))


def _dose(skill: SkillPlan) -> SkillDose:
    return SkillDose.model_validate(
        {
            "target": skill.target,
            "source": skill.source,  # as resolved (auto -> synthesize or repeat)
            "max_repeats": skill.max_repeats,
            "spacing": "uniform" if skill.spacing == "every" else skill.spacing,
            "pool_size": skill.pool_size,  # a seed draws its own pool of that size
        }
    )


def plan_from_manifest(manifest: Mapping[str, Any], seed: int | None = None) -> MixturePlan:
    """The MixturePlan a built mixture's manifest records, with `seed` (default: its own)
    drawing the schedules of `random` and `clustered` skills. Every other number (the
    rate of each skill, its cap, the length) is the stored plan's. With the mixture's own
    seed this is the plan it was built from (building it again gives the same bytes).

    Raises ValueError for a manifest without a builder's plan (a mixture written by other
    tools), PlanError when `seed` draws a batch with more placements than even shared rows hold
    (`check_shared_rows`)."""
    stored = manifest.get("plan")
    if not isinstance(stored, Mapping) or "n_batches" not in stored or "skills" not in stored:
        raise ValueError(
            "the mixture's manifest holds no plan of curation.mixture's builder, so it cannot "
            "be drawn again with another seed"
        )
    try:
        skills = {sid: SkillPlan(**s) for sid, s in stored["skills"].items()}
    except TypeError as exc:
        raise ValueError(f"the manifest's plan is of another builder version: {exc}") from exc
    fields = {k: stored[k] for k in DosingPlan.model_fields if k in stored and k != "skills"}
    if seed is not None:
        fields["seed"] = seed
    dosing = DosingPlan.model_validate(
        {**fields, "skills": {sid: _dose(s).model_dump() for sid, s in skills.items()}}
    )
    n_batches = int(stored["n_batches"])
    counts = {
        sid: schedule_counts(
            dosing.skills[sid], s.per_batch, n_batches, dosing.seed, s.placement_stream
        )
        for sid, s in skills.items()
    }
    try:
        check_shared_rows(counts, skills, dosing)
    except PlanError as exc:
        raise PlanError(f"seed {dosing.seed}: {exc}") from None
    return MixturePlan(
        dosing=dosing,
        n_batches=n_batches,
        corpus=dict(stored["corpus"]),
        skills=skills,
        counts=counts,
        warnings=list(stored.get("warnings", [])),
        corpus_fingerprint=manifest.get("corpus", {}).get("fingerprint"),
    )


def corpus_source(manifest: Mapping[str, Any]) -> CorpusSource:
    """The corpus a mixture was built from, as its manifest records it."""
    corpus = manifest["corpus"]
    names = [f.name for f in dataclasses.fields(CorpusSource)]
    return CorpusSource(**{k: corpus[k] for k in names if k in corpus})


def _shard_batches(manifest: Mapping[str, Any]) -> int | None:
    for shard in manifest.get("shards", []):
        if shard.get("kind") == "tokens" and "batches" in shard:
            lo, hi = shard["batches"]
            return int(hi - lo)
    return None


def build_variant(
    mixture_dir: str | os.PathLike[str],
    seed: int,
    out_dir: str | os.PathLike[str],
    *,
    allowed_roots: list[str],
    allowed_protocols: set[str] | None = None,
    progress: Progress | None = None,
    audit: bool = True,
) -> dict[str, Any]:
    """Build the variant of the mixture in `mixture_dir` whose mixture seed is `seed` into
    `out_dir` (under `allowed_roots`, like the corpus); returns its record
    (VARIANT_RECORD): the mixture it varies, the seed, its token shards' sha256 and whether
    its audit passed.

    A finished variant is reused. The build goes to a temporary folder beside `out_dir`
    that is renamed into place when done, so two processes building the same variant
    both end with one whole folder. Raises what build_mixture raises (the corpus changed,
    a failed audit...) and PlanError for a seed that overfills a batch."""
    out = os.fspath(out_dir)
    record_path = os.path.join(out, VARIANT_RECORD)
    if os.path.exists(record_path):
        _remove_stale_builds(out)
        return _read_record(record_path)
    manifest = read_manifest(os.fspath(mixture_dir))
    plan = plan_from_manifest(manifest, seed)
    specs = [SkillSpec.model_validate(s["spec"]) for s in manifest.get("skills", {}).values()]
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=_temporary_prefix(out), suffix=".tmp", dir=parent)
    try:
        result = build_mixture(
            corpus_source(manifest), specs, plan, work,
            allowed_roots=allowed_roots, allowed_protocols=allowed_protocols,
            progress=progress, shard_batches=_shard_batches(manifest), audit=audit,
            plots=False,
        )  # fmt: skip
        built = result["manifest"]
        record = {
            "variant_of": os.path.abspath(os.fspath(mixture_dir)),
            "mixture_seed": manifest.get("seed"),
            "seed": seed,
            "tokens_sha256": [s["sha256"] for s in built["shards"] if s["kind"] == "tokens"],
            "audit_passed": None if result["audit"] is None else result["audit"]["passed"],
        }
        with open(os.path.join(work, VARIANT_RECORD), "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=1)
        try:
            os.rename(work, out)
        except OSError:
            if not os.path.exists(record_path):  # not another process's finished variant
                raise
        _remove_stale_builds(out)
        return record
    except Exception:
        # Another process finished the variant first and cleared this build's folder as
        # stale (see _remove_stale_builds): its variant is the same one.
        if os.path.exists(record_path):
            return _read_record(record_path)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _temporary_prefix(out: str) -> str:
    return f".{os.path.basename(out)}."


def _read_record(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return dict(json.load(fh))


def _remove_stale_builds(out: str) -> None:
    """Once the variant is in place, delete the build folders of it that writers killed
    before their rename left beside it (`.seed-3.<random>.tmp`): they are of no use. A
    build still going finds its folder gone and returns the finished variant."""
    parent = os.path.dirname(os.path.abspath(out))
    pattern = os.path.join(glob.escape(parent), glob.escape(_temporary_prefix(out)) + "*.tmp")
    for stale in glob.glob(pattern):
        shutil.rmtree(stale, ignore_errors=True)
