"""A verification: arms x sizes x seeds of training runs, verdicts and plots.

Each (arm, size, seed) is its own resumable unit in `trainer.run_dir(workdir, key)`
(see trainer.train_run): a finished run's result.json is reused, never retrained,
so a verification interrupted anywhere picks up where it stopped.

With workers > 1 runs go to a pool of spawned processes, one torch thread each
(training.parallel; on 2 cores two single-thread runs beat one two-thread run). A pool
cannot start inside a daemonic process, such as a Celery prefork worker: there, keep
workers=1 and the runs train in the calling process.

Seeds vary the initial weights, the data, or both (`seed_scope`, SEED_SCOPES): with
`data` or `both` each seed of an arm that places instances trains on its own variant of
the arm's mixture (`seed_mixtures`: the stored plan drawn again with a seed derived from
the mixture's seed and the run seed, built into the verification's work directory by
curation.mixture.variant); a baseline places nothing, so it has nothing to draw.

A caller that records each run (the service) passes `on_event`: it receives every run's
events (training.events), in the calling process, wherever the run trains; a run that
finished in an earlier attempt reports its RunFinished first. `progress(fraction,
message)` gets the whole verification's progress.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from curation.atomic import locked, write_json_atomic
from curation.mixture.format import AUDIT
from curation.skills.probes import probe_instances
from curation.skills.spec import SkillSpec
from training import verdict
from training.data import MixtureReader, open_mixture
from training.evaluate import READOUTS, EvalSpec, natural_probe_keys, probe_keys
from training.events import Event, OnEvent, RunFinished, RunKey, StepDone, describe
from training.parallel import RunScope, RunSpec, train, train_runs
from training.report import plot_verification
from training.trainer import RESULT, RunResult, TrainConfig, run_dir

Progress = Callable[[float, str], None]

COMPARED = ("tokenizer", "corpus", "seq_len", "batch_tokens")
DATA_SCOPE_INIT_SEED = 0
"""With seed_scope `data`, every run starts from the initial weights of this seed."""
DEMO: dict[str, Any] = {
    "sizes": ["nano"],
    "seeds": [0, 1, 2, 3, 4],
    "token_budget": 4000 * 1024,
    "eval_every": 200,
    "workers": 2,
    "eval_options": {"heldout_tokens": 32_768},
}
"""Settings that show the effect on 2 CPU cores in minutes (SCIENCE.md, "What we measured
here"): mixtures of batch_tokens=1024, seq_len=64 (16 sequences a batch), 4000 steps of
the nano model, 5 seeds per arm, two single-thread workers. Measured in
benchmarks/RESULTS.md (bench_trainer.py --experiment)."""


SEED_SCOPES = {
    "init": "seeds vary the initial weights only; every seed trains on the arm's mixture",
    "data": "seeds vary the data only: each seed trains on its own draw of the arm's "
    f"mixture (instances, random schedules), every run from initial weights seed "
    f"{DATA_SCOPE_INIT_SEED}",
    "both": "seeds vary the initial weights and the data (each seed its own draw of the "
    "arm's mixture)",
}
"""What a verification's seeds vary (the request's `seed_scope`)."""


def init_seed(seed_scope: str, seed: int) -> int:
    """The weights' seed of run seed `seed`: the seed itself, or DATA_SCOPE_INIT_SEED for
    every run when only the data varies."""
    if seed_scope not in SEED_SCOPES:
        raise ValueError(f"unknown seed_scope {seed_scope!r}; scopes: {', '.join(SEED_SCOPES)}")
    return DATA_SCOPE_INIT_SEED if seed_scope == "data" else seed


def _corpus_root(manifest: dict[str, Any]) -> str:
    """The local folder a mixture's corpus lies in (its uri, a file or glob's folder)."""
    uri = str(manifest["corpus"]["uri"])
    if "://" in uri:
        raise ValueError(
            f"the corpus {uri} is remote: give allowed_roots (and allowed_protocols) to draw "
            "the mixture's variants"
        )
    path = uri
    while any(ch in path for ch in "*?["):
        path = os.path.dirname(path)
    return path if os.path.isdir(path) else os.path.dirname(path)


def seed_mixtures(
    mixture_dir: str | Path,
    seeds: Sequence[int],
    out_root: str | Path,
    *,
    seed_scope: str = "both",
    allowed_roots: Sequence[str] | None = None,
    allowed_protocols: set[str] | None = None,
    progress: Progress | None = None,
) -> dict[int, Path]:
    """Seed -> the mixture folder that seed trains on.

    `init`, or a mixture that places nothing (a baseline): the mixture itself for every
    seed. `data` / `both`: seed s gets `out_root/seed-<s>`, the mixture's plan drawn again
    with mixture seed curation.mixture.variant.variant_seed(its seed, s) (the instances,
    the batches of random schedules, the skills' order in a batch; the corpus and its
    order stay), built once and reused after. allowed_roots: where the corpus may be read
    and the variants written (default: the corpus' folder and `out_root`). Plain and pure
    of any run: a caller that trains several seeds in one process opens each seed's path.
    """
    init_seed(seed_scope, 0)  # an unknown scope is a ValueError
    from curation.mixture.manifest import read_manifest
    from curation.mixture.variant import build_variant, places_anything, variant_seed

    path = Path(mixture_dir)
    manifest = read_manifest(str(path))
    if seed_scope == "init" or not places_anything(manifest):
        return dict.fromkeys(seeds, path)
    out = Path(out_root)
    roots = list(allowed_roots) if allowed_roots is not None else [str(out), _corpus_root(manifest)]
    report = progress or (lambda fraction, message: None)
    paths = {}
    for i, seed in enumerate(seeds):
        report(i / max(1, len(seeds)), f"drawing the data of seed {seed} from {path.name}")
        target = out / f"seed-{seed}"
        build_variant(
            path, variant_seed(int(manifest["seed"]), seed), target,
            allowed_roots=roots, allowed_protocols=allowed_protocols,
        )  # fmt: skip
        paths[seed] = target
    return paths


def arm_audit(mixture_dir: str | Path, skills: Sequence[SkillSpec]) -> dict[str, Any] | None:
    """The audit of the mixture in `mixture_dir`, covering `skills` (a verification's): its
    audit.json when that audits every one of them and lists where their natural instances
    lie (which a run's forgetting readout reads), else the mixture audited again
    (curation.mixture.audit.audit_mixture, at the stored audit's tolerance) for its own
    skills and these, which rewrites audit.json keeping the rows of skills other
    verifications had it audit (one audit at a time, under a lock beside audit.json, so
    that two verifications of different skills on one mixture do not drop each other's
    rows). A baseline is audited like any mixture:
    skills it does not dose are audited for their natural instances. None for a mixture
    without a builder's plan (nothing to audit against)."""
    from curation.mixture.audit import DEFAULT_TOLERANCE, audit_mixture
    from curation.mixture.manifest import read_manifest

    path = Path(mixture_dir)
    manifest = read_manifest(str(path))
    plan = manifest.get("plan")
    if not isinstance(plan, dict) or not {"skills", "n_batches"} <= set(plan):
        return None  # (the test of curation.mixture.variant.plan_from_manifest)
    # Verifications of other skills may audit this mixture at the same time: one at a time,
    # and each keeps the rows the others added (their runs read them from audit.json).
    with locked(path / (AUDIT + ".lock")):
        stored = json.loads((path / AUDIT).read_text()) if (path / AUDIT).exists() else None
        rows = (stored or {}).get("skills", {})
        located = all("batches" in rows.get(s.id, {}).get("natural", {}) for s in skills)
        if stored is not None and located:
            return dict(stored)  # audits every skill, its natural instances located
        own = [SkillSpec.model_validate(s["spec"]) for s in manifest.get("skills", {}).values()]
        extra = [s for s in skills if s.id not in manifest.get("skills", {})]
        tolerance = (stored or {}).get("tolerance", DEFAULT_TOLERANCE)
        audited = {s.id for s in [*own, *extra]}
        kept = {sid: row for sid, row in rows.items() if sid not in audited}
        return audit_mixture(str(path), [*own, *extra], tolerance, plots=False, kept_rows=kept)


NATURAL_LOCATIONS = ("batches", "sequences")
"""The audit's lists of where natural instances lie: in its audit.json, not in the report."""


def _without_locations(row: dict[str, Any]) -> dict[str, Any]:
    natural = row.get("natural", {})
    batches = len(natural.get("batches") or [])
    kept = {k: v for k, v in natural.items() if k not in NATURAL_LOCATIONS}
    return {**row, "natural": {**kept, "exposure_batches": batches}}


def audit_summary(mixture: MixtureReader, skills: Sequence[SkillSpec]) -> dict[str, Any] | None:
    """What the report shows of an arm's audit (every arm alike, the baseline too): whether
    it passed, and per skill of the verification its audit row (placed against planned,
    natural instances, gaps); None when the mixture has no audit (no builder's plan)."""
    path = mixture.path / AUDIT
    if not path.exists():
        return None
    audit = json.loads(path.read_text())
    rows = audit.get("skills", {})
    return {
        "passed": audit.get("passed"),
        "tolerance": audit.get("tolerance"),
        "rule": audit.get("rule"),
        "skills": {s.id: _without_locations(rows[s.id]) for s in skills if s.id in rows},
    }


def _audit_draws(seed_paths: dict[str, dict[int, Path]], skills: Sequence[SkillSpec]) -> None:
    """arm_audit of every seed's mixture (a variant is audited for its own skills when
    built): the runs read their natural instances' batches from it."""
    for path in dict.fromkeys(p for paths in seed_paths.values() for p in paths.values()):
        arm_audit(path, skills)


def data_draw(mixture_dir: str | Path, seed_scope: str, init: int) -> dict[str, Any]:
    """What one run trained on, for the report: the mixture folder, its seed, the mixture it
    is a variant of (None: the arm's own), its token shards' sha256 and the weights' seed."""
    from curation.mixture.manifest import read_manifest
    from curation.mixture.variant import VARIANT_RECORD

    path = Path(mixture_dir)
    record = path / VARIANT_RECORD
    variant = json.loads(record.read_text()) if record.exists() else {}
    manifest = read_manifest(str(path))
    return {
        "seed_scope": seed_scope,
        "init_seed": init,
        "mixture_dir": str(path),
        "mixture_seed": manifest.get("seed"),
        "variant_of": variant.get("variant_of"),
        "tokens_sha256": [s.get("sha256") for s in manifest["shards"] if s["kind"] == "tokens"],
    }


def check_arms(mixtures: dict[str, MixtureReader]) -> None:
    """Refuse arms that differ in tokenizer, corpus or batch shape: they are not comparable."""
    if not mixtures:
        raise ValueError("a verification needs at least one arm")
    (first, ref), *others = mixtures.items()
    for arm, mixture in others:
        for key in COMPARED:
            if mixture.manifest.get(key) != ref.manifest.get(key):
                raise ValueError(
                    f"arms {first!r} and {arm!r} differ in their manifests' {key!r} "
                    f"({ref.manifest.get(key)!r} vs {mixture.manifest.get(key)!r}); a verification "
                    "compares mixtures of the same corpus, tokenizer and batch shape"
                )


PHASE_RULE = (
    "arms dosed `every {n, k}` are read at multiples of their dosing period (the multiple "
    "nearest eval_every): one whole period after a dose, just before the next; every run's "
    "steps are cut to a whole number of periods (the lcm over the arms) so that the final "
    "reading sits one period after the last dose"
)


def align_budget(
    mixtures: dict[str, MixtureReader], token_budget: int | None
) -> tuple[int | None, dict[str, Any] | None]:
    """The token budget cut to a whole number of the arms' dosing periods (their lcm), and
    what was done (None when no arm is dosed `every`: the budget is unchanged). A budget
    already whole is returned as given. ValueError when not one period fits."""
    periods = {arm: m.dosing_period for arm, m in mixtures.items()}
    given = [p for p in periods.values() if p]
    if not given:
        return token_budget, None
    period = math.lcm(*given)
    steps = {arm: m.steps_for(token_budget) for arm, m in mixtures.items()}
    fewest = min(steps.values())
    aligned = fewest // period * period
    if aligned == 0:
        raise ValueError(
            f"the runs' {fewest} steps do not hold one dosing period of {period} batches; "
            "give a larger token_budget"
        )
    info = {"period": period, "periods": periods, "steps_asked": fewest, "steps": aligned,
            "rule": PHASE_RULE}  # fmt: skip
    if all(n == aligned for n in steps.values()):
        return token_budget, info
    return aligned * next(iter(mixtures.values())).batch_tokens, info


def skill_metric(skill: SkillSpec, metric: str | None) -> str:
    """The verdict's metric for `skill`: `metric`, or by default `forced_choice` where the
    skill's family has a label set, else `exact`. ValueError for a metric the skill's
    family cannot provide."""
    labels = None if skill.family is None else skill.family.labels()
    if metric is None:
        return "exact" if labels is None else "forced_choice"
    if metric not in verdict.METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(verdict.METRICS)}")
    if metric == "forced_choice" and skill.generator is not None and labels is None:
        raise ValueError(
            f"skill {skill.id!r} ({skill.generator.family}) has no label set, so no forced "
            "choice; use metric 'exact'"
        )
    return metric  # (a skill without a generator has no probe set: no verdict to read)


CHANCE_RULE = (
    "the share of the probe set's most common answer: what the best prompt-blind model "
    "scores (1/k for k balanced labels)"
)


def _thresholds(
    skills: list[SkillSpec],
    threshold: float | dict[str, float] | None,
    metric: str | None,
    collisions: dict[str, dict[str, Any]] | None = None,
) -> dict:
    out = {}
    for skill in skills:
        probes = probe_instances(skill)
        found = (collisions or {}).get(skill.id)
        if found and found["keys"]:
            drop = set(found["keys"])
            keys = probe_keys(skill)
            probes = [i for i, key in zip(probes, keys, strict=True) if key not in drop]
        chance = verdict.chance_level([i.answer for i in probes])
        by_stratum: dict[str, list[str]] = {}
        for instance in probes:
            assert skill.family is not None  # a skill with probe instances has a generator
            name = skill.family.stratum(instance)
            if name is not None:
                by_stratum.setdefault(name, []).append(instance.answer)
        given = threshold.get(skill.id) if isinstance(threshold, dict) else threshold
        value, note = verdict.default_threshold(chance) if given is None else (given, "given")
        out[skill.id] = {
            "threshold": value,
            "chance": chance,
            "chance_rule": CHANCE_RULE,
            "threshold_rule": note,
            "metric": skill_metric(skill, metric),
            "name": skill.name,
            "strata": {
                name: {"chance": verdict.chance_level(answers), "probe_instances": len(answers)}
                for name, answers in by_stratum.items()
            },
        }
        if found is not None:
            out[skill.id]["probe_collisions"] = {
                "excluded_instances": len(found["keys"]),
                "occurrences_by_arm": found["occurrences_by_arm"],
                "rule": "probe instances found in the training text of any arm (their match "
                "keys) are left out of the probe sample and of the chance level",
            }
    return out


def make_eval_spec(
    mixtures: dict[str, MixtureReader],
    skills: Sequence[SkillSpec],
    token_budget: int | None,
    heldout_docs: Sequence[str] | np.ndarray | None = None,
    eval_options: dict[str, Any] | None = None,
) -> tuple[EvalSpec, dict[str, dict[str, Any]]]:
    """The EvalSpec every run of a verification shares, and the natural probe collisions it
    leaves out (natural_collisions over the arms' trained batches; pass them to
    make_report). For a caller that trains the runs itself, as run_verification does."""
    steps = min(m.steps_for(token_budget) for m in mixtures.values())
    collisions = natural_collisions(mixtures, list(skills), steps)
    exclude = {sid: c["keys"] for sid, c in collisions.items() if c["keys"]}
    options = {"exclude_probes": exclude or None, **(eval_options or {})}
    return EvalSpec(skills=list(skills), heldout=heldout_docs, **options), collisions


def natural_collisions(
    mixtures: dict[str, MixtureReader], skills: list[SkillSpec], n_batches: int
) -> dict[str, dict[str, Any]]:
    """Per skill: the probe instances any arm's first `n_batches` hold naturally (`keys`,
    the union over arms: the runs of every arm are read on the same probe sample) and how
    often each arm holds them (`occurrences_by_arm`)."""
    out: dict[str, dict[str, Any]] = {}
    for arm, mixture in mixtures.items():
        for sid, got in natural_probe_keys(mixture, skills, n_batches).items():
            entry = out.setdefault(sid, {"keys": set(), "occurrences_by_arm": {}})
            entry["keys"] |= set(got["keys"])
            entry["occurrences_by_arm"][arm] = got["occurrences"]
    return {sid: {**e, "keys": sorted(e["keys"])} for sid, e in out.items()}


def run_verification(
    arms: dict[str, str | Path],
    skills: list[SkillSpec],
    sizes: Sequence[str],
    seeds: Sequence[int],
    token_budget: int | None,
    eval_every: int,
    threshold: float | dict[str, float] | None,
    device: str,
    workdir: str | Path,
    progress: Progress | None = None,
    heldout_docs: Sequence[str] | np.ndarray | None = None,
    *,
    on_event: OnEvent | None = None,
    baseline: str | None = "baseline",
    workers: int = 1,
    config: TrainConfig | None = None,
    eval_options: dict[str, Any] | None = None,
    initializer: Callable[[], None] | None = None,
    run_scope: RunScope | None = None,
    metric: str | None = None,
    seed_scope: str = "both",
    allowed_roots: Sequence[str] | None = None,
    allowed_protocols: set[str] | None = None,
    looks: Sequence[int] | None = None,
    seed_group: int | None = 1,
) -> dict[str, Any]:
    """Train every (arm, size, seed), judge each skill x size x arm, plot; returns the report.

    threshold: None for the per-family default (verdict.default_threshold), a number for
    every skill, or a dict by skill id. metric: what the verdict reads (verdict.METRICS),
    None for each skill's default (skill_metric); a metric a skill cannot provide is a
    ValueError before any training. progress(fraction, message): the verification's
    progress; on_event: every run's events (training.events); either may raise to cancel.
    baseline: the arm the others are compared with.
    config: base training settings; size, seed, token_budget, eval_every, device are set
    per run. eval_options: EvalSpec fields (n_probe, n_seen, ...). initializer: called
    first in each pool process (e.g. to set up its logging); run_scope: entered around each
    run, here or in the pool (training.parallel.RunScope).
    seed_scope: what the seeds vary (SEED_SCOPES); with `data` or `both` each seed's
    variant of each arm's mixture is built first into `workdir/mixtures/<arm>`
    (seed_mixtures; allowed_roots, allowed_protocols: where the corpus may be read).
    looks: sequential verdicts (verdict.seed_looks): train the first looks[0] of `seeds`,
    then more, look by look, until verdict.next_look says every cell is decided or the
    last look is done (SEQUENTIAL_RULE); None trains every seed at once.
    seed_group: seeds of one arm and size trained together as one grouped model, at most
    this many (1: each alone; None: automatic; training.parallel.plan_groups).
    """
    started, work = time.perf_counter(), Path(workdir)
    for skill in skills:
        skill_metric(skill, metric)  # refuse before training
    init_seed(seed_scope, 0)
    mixtures = {arm: open_mixture(path) for arm, path in arms.items()}
    check_arms(mixtures)
    say = progress or (lambda fraction, message: None)
    pool = list(seeds)
    if looks is not None:
        looks = list(looks)
        verdict.next_look({}, looks)  # increasing, else a ValueError
        if len(pool) < looks[-1]:
            raise ValueError(f"{len(pool)} seeds given for looks up to {looks[-1]} seeds")
    token_budget, _ = align_budget(mixtures, token_budget)
    for path in arms.values():
        arm_audit(path, skills)  # the baseline's too: audited for its natural instances
    say(0.0, "finding probe instances in the corpus text")
    spec, collisions = make_eval_spec(mixtures, skills, token_budget, heldout_docs, eval_options)
    lines = _thresholds(list(spec.skills), threshold, metric, collisions)
    base = replace(config or TrainConfig(), token_budget=token_budget, eval_every=eval_every)
    base = replace(base, device=device, num_threads=1 if workers > 1 else base.num_threads)
    most = pool[: looks[-1]] if looks else pool
    tracker = _Tracker(plan_runs(mixtures, sizes, most, work, base), progress, on_event)
    results: dict[RunKey, RunResult] = {}
    target, done_looks = (looks[0] if looks else len(pool)), []
    while True:
        current = pool[:target]
        seed_paths = {
            arm: seed_mixtures(
                path,
                current,
                work / "mixtures" / arm,
                seed_scope=seed_scope,
                allowed_roots=allowed_roots,
                allowed_protocols=allowed_protocols,
                progress=lambda fraction, message: say(0.0, message),
            )  # fmt: skip
            for arm, path in arms.items()
        }
        _audit_draws(seed_paths, skills)
        runs = plan_runs(mixtures, sizes, current, work, base, seed_paths, seed_scope)
        _train_runs(runs, spec, tracker, results, workers, initializer, run_scope, seed_group)
        done_looks.append(target)
        if looks is None:
            break
        counts = look_counts([(run, results[run.key]) for run in runs], lines)
        following = verdict.next_look(counts, looks)
        if following is None:
            break
        target = following
    in_order = [(run, results[run.key]) for run in runs]
    report = make_report(
        in_order, mixtures, spec.skills, threshold, baseline, work, metric, seed_scope, collisions
    )
    if looks is not None:
        report["settings"]["sequential"] = {
            "looks": looks,
            "looks_done": done_looks,
            "z": verdict.looks_z(len(looks)),
            "rule": SEQUENTIAL_RULE,
            "decided": all(
                verdict.decide(verdict.wilson_interval(k, n, verdict.looks_z(len(looks))))
                != "inconclusive"
                for k, n in counts.values()
            ),
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(work / "report.json", report, indent=1)
    tracker.progress(1.0, "verification done")
    return report


SEQUENTIAL_RULE = (
    "seeds are added in looks fixed before training (min_seeds, then doubling, up to "
    "max_seeds); after each look every verdict cell's Wilson interval is taken at z (a "
    "Bonferroni split of 5% over the looks), and training stops once every cell is "
    "decided (its interval wholly above or below 0.5) or the last look is done; the "
    "verdicts then read all the seeds trained, with the usual 95% interval"
)


def look_counts(
    results: list[tuple[RunSpec, RunResult]], lines: dict[str, dict[str, Any]]
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(skill, size, arm) -> (retained seeds, seeds) of finished runs: what
    verdict.next_look reads. `lines`: the skills' thresholds and metrics (_thresholds)."""
    counts: dict[tuple[str, str, str], list[int]] = {}
    for run, result in results:
        for skill_id, line in lines.items():
            value = _final(result, skill_id, f"heldout_{verdict.METRIC_KEYS[line['metric']]}")
            if value is None:
                continue  # no probe set: no verdict, nothing to decide
            cell = counts.setdefault((skill_id, run.key.size, run.key.arm), [0, 0])
            cell[0] += value >= line["threshold"]
            cell[1] += 1
    return {key: (k, n) for key, (k, n) in counts.items()}


def _train_runs(
    runs: list[RunSpec],
    spec: EvalSpec,
    tracker: _Tracker,
    results: dict[RunKey, RunResult],
    workers: int,
    initializer: Callable[[], None] | None,
    run_scope: RunScope | None,
    seed_group: int | None = 1,
) -> None:
    """Train the runs not in `results` into it, in seed groups (training.parallel.train_runs);
    a run finished in an earlier attempt is reported (RunFinished), never retrained."""
    for run in runs:
        if run.key not in results and (Path(run.out_dir) / RESULT).exists():
            results[run.key] = train(run, spec, tracker, run_scope)
    todo = [run for run in runs if run.key not in results]
    results |= train_runs(
        todo, spec, workers, tracker,
        seed_group=seed_group, initializer=initializer, run_scope=run_scope,
    )  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What a verification trains, checked, without training (plan_verification)."""

    mixtures: dict[str, MixtureReader]
    spec: EvalSpec
    runs: list[RunSpec]
    collisions: dict[str, dict[str, Any]]
    """Natural probe collisions left out of the evaluation (make_eval_spec): pass them to
    make_report."""


def plan_verification(
    arms: dict[str, str | Path],
    skills: list[SkillSpec],
    sizes: Sequence[str],
    seeds: Sequence[int],
    token_budget: int | None,
    eval_every: int,
    device: str,
    workdir: str | Path,
    heldout_docs: Sequence[str] | np.ndarray | None = None,
    *,
    workers: int = 1,
    config: TrainConfig | None = None,
    eval_options: dict[str, Any] | None = None,
    metric: str | None = None,
    seed_scope: str = "init",
    allowed_roots: Sequence[str] | None = None,
    allowed_protocols: set[str] | None = None,
) -> Plan:
    """What run_verification trains, checked, without training: the arms' mixtures, the
    evaluation (natural probe collisions left out), each seed's mixture (seed_mixtures,
    built once under `workdir/mixtures`) and every run (plan_runs). For a caller that
    trains the runs elsewhere (the service trains each group of seeds as a unit of work on
    any training worker): train each with training.parallel.train, then make_report from
    their results with this plan's collisions. The same arguments give the same runs, in
    the same folders, in every process."""
    for skill in skills:
        skill_metric(skill, metric)  # refuse before training
    init_seed(seed_scope, 0)
    work = Path(workdir)
    mixtures = {arm: open_mixture(path) for arm, path in arms.items()}
    check_arms(mixtures)
    token_budget, _ = align_budget(mixtures, token_budget)
    for path in arms.values():
        arm_audit(path, skills)  # the baseline's too: audited for its natural instances
    spec, collisions = make_eval_spec(mixtures, skills, token_budget, heldout_docs, eval_options)
    base = replace(config or TrainConfig(), token_budget=token_budget, eval_every=eval_every)
    base = replace(base, device=device, num_threads=1 if workers > 1 else base.num_threads)
    seed_paths = {
        arm: seed_mixtures(
            path,
            list(seeds),
            work / "mixtures" / arm,
            seed_scope=seed_scope,
            allowed_roots=allowed_roots,
            allowed_protocols=allowed_protocols,
        )  # fmt: skip
        for arm, path in arms.items()
    }
    _audit_draws(seed_paths, skills)
    runs = plan_runs(mixtures, sizes, list(seeds), work, base, seed_paths, seed_scope)
    return Plan(mixtures, spec, runs, collisions)


class _Tracker:
    """Passes the runs' events on, and the verification's progress from them: the mean,
    over runs, of the share of its steps each has done."""

    def __init__(self, runs: list[RunSpec], progress: Progress | None, on_event: OnEvent | None):
        self.done = dict.fromkeys((run.key for run in runs), 0.0)
        self.progress = progress or (lambda fraction, message: None)
        self.on_event = on_event

    def __call__(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if isinstance(event, StepDone):
            self.done[event.key] = event.step / event.steps
        elif isinstance(event, RunFinished):
            self.done[event.key] = 1.0
        else:
            return
        self.progress(sum(self.done.values()) / len(self.done), describe(event))


def plan_runs(
    mixtures: dict[str, MixtureReader],
    sizes: Sequence[str],
    seeds: Sequence[int],
    workdir: Path,
    base: TrainConfig,
    seed_paths: dict[str, dict[int, Path]] | None = None,
    seed_scope: str = "init",
) -> list[RunSpec]:
    """One run per (size, seed, arm), arms interleaved, each in its run_dir, on its seed's
    mixture (`seed_paths[arm][seed]` from seed_mixtures; default: the arm's mixture), its
    weights seeded by init_seed(seed_scope, seed)."""
    keys = [RunKey(arm, size, seed) for size in sizes for seed in seeds for arm in mixtures]
    paths = seed_paths or {}
    return [
        RunSpec(key, str(paths.get(key.arm, {}).get(key.seed, mixtures[key.arm].path)),
                str(run_dir(workdir, key)),
                replace(base, size=key.size, seed=init_seed(seed_scope, key.seed)))
        for key in keys
    ]  # fmt: skip


def make_report(
    results: list[tuple[RunSpec, RunResult]],
    mixtures: dict[str, MixtureReader],
    skills: list[SkillSpec],
    threshold: float | dict[str, float] | None,
    baseline: str | None,
    workdir: Path,
    metric: str | None = None,
    seed_scope: str = "init",
    collisions: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Verdicts, run and arm summaries, and plots (into workdir/plots) from finished runs.

    For a caller that trains the runs itself: make_eval_spec, plan_runs,
    training.parallel.train per run, then this (with make_eval_spec's collisions).
    """
    if baseline not in mixtures:
        baseline = None
    lines = _thresholds(skills, threshold, metric, collisions)
    verdicts = _verdicts(results, lines, baseline)
    runs = [(run.key.arm, run.key.size, run.key.seed, r) for run, r in results]
    steps = results[0][1].steps if results else 0
    first = results[0][0].config if results else TrainConfig()
    settings: dict[str, Any] = {}
    periods = {arm: m.dosing_period for arm, m in mixtures.items()}
    if any(periods.values()):
        period = math.lcm(*(p for p in periods.values() if p))
        settings["phase"] = {"periods": periods, "period": period,
                             "aligned": steps % period == 0, "rule": PHASE_RULE}  # fmt: skip
    return {
        "verdicts": verdicts,
        "runs": [_run_summary(j, r, seed_scope) for j, r in results],
        "arms": {arm: _arm_summary(m, skills, steps) for arm, m in mixtures.items()},
        "settings": {
            "sizes": list(dict.fromkeys(j.key.size for j, _ in results)),
            "seeds": list(dict.fromkeys(j.key.seed for j, _ in results)),
            "steps": steps, "baseline": baseline, "thresholds": lines,
            "seed_scope": seed_scope, "seed_scope_rule": SEED_SCOPES[seed_scope],
            "train": {k: v for k, v in vars(first).items() if k not in ("size", "seed")},
            **settings,
        },
        "plots": plot_verification(runs, verdicts, lines, workdir / "plots"),
    }  # fmt: skip


def _final(result: RunResult, skill_id: str, key: str) -> Any:
    return result.final.get("skills", {}).get(skill_id, {}).get(key)


def _values(cell: list[RunResult], skill_id: str, readout: str) -> list[float] | None:
    """Final held-out `readout` per seed; None if the skill has no probe set."""
    values = [_final(r, skill_id, f"heldout_{readout}") for r in cell]
    return None if any(v is None for v in values) else [v for v in values if v is not None]


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def _strata(cell: list[RunResult], seeds: list[int], skill_id: str, whole: list[float],
            line: dict, readout: str) -> dict[str, Any]:  # fmt: skip
    out = {}
    for name, stratum in line["strata"].items():
        finals = [_final(r, skill_id, "heldout_strata") or {} for r in cell]
        got = [f.get(name, {}) for f in finals]
        out[name] = verdict.stratum_check(
            name, seeds, whole, [g.get(readout) for g in got], [g.get("n", 0) for g in got],
            line["threshold"], line["chance"], stratum["chance"],
        )  # fmt: skip
        out[name]["readouts"] = {
            r: verdict.summary([g.get(r) for g in got]) for r in READOUTS
        }  # fmt: skip
    return out


def _verdicts(results: list, lines: dict, baseline: str | None) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, str], list[tuple[int, RunResult]]] = {}
    for run, result in results:
        for skill_id in lines:
            key = (skill_id, run.key.size, run.key.arm)
            cells.setdefault(key, []).append((run.key.seed, result))
    out = []
    for (skill_id, size, arm), seeded in cells.items():
        line = lines[skill_id]
        readout = verdict.METRIC_KEYS[line["metric"]]
        seeds, cell = [seed for seed, _ in seeded], [r for _, r in seeded]
        values = _values(cell, skill_id, readout)
        if values is None:
            continue  # a skill without a generator has no probe set to judge it on
        base, base_seeds = None, []
        if baseline is not None and arm != baseline:
            base_cell = cells[(skill_id, size, baseline)]
            base = _values([r for _, r in base_cell], skill_id, readout)
            base_seeds = [seed for seed, _ in base_cell]
        row = verdict.verdict(
            skill_id, size, arm, values, line["threshold"], base, line["chance"],
            line["threshold_rule"], line["metric"],
        )  # fmt: skip
        row |= verdict.given_outcome(values, line["threshold"])
        if row["effect_vs_baseline"] is not None and base is not None:
            row["effect_vs_baseline"]["paired"] = verdict.paired_effect(
                dict(zip(seeds, values, strict=True)), dict(zip(base_seeds, base, strict=True))
            )
        row["threshold_sensitivity"] = verdict.threshold_sensitivity(values, line["threshold"])
        row["readouts"] = {
            r: verdict.summary([_final(x, skill_id, f"heldout_{r}") for x in cell])
            for r in READOUTS
        }
        midrow = {
            r: verdict.summary([_final(x, skill_id, f"heldout_midrow_{r}") for x in cell])
            for r in READOUTS
        }
        if any(v is not None for v in midrow.values()):
            row["readouts_midrow"] = midrow
        row["strata"] = _strata(cell, seeds, skill_id, values, line, readout)
        row["warnings"] = [s["warning"] for s in row["strata"].values() if s["warning"]]
        row["mean_seen_accuracy"] = _mean([_final(r, skill_id, "seen_acc") for r in cell])
        row["mean_general_loss"] = _mean([r.final.get("general_loss") for r in cell])
        row["mean_forgetting"] = _mean(
            [r.retention.get(skill_id, {}).get("forgetting") for r in cell]
        )
        out.append(row)
    return out


def _run_summary(run: RunSpec, result: RunResult, seed_scope: str) -> dict[str, Any]:
    return {
        "arm": run.key.arm, "size": run.key.size, "seed": run.key.seed, "dir": run.out_dir,
        "steps": result.steps, "tokens": result.tokens, "seconds": result.seconds,
        "n_params": result.model["n_params"], "resumes": result.resumes,
        "final": result.final,
        "evals": result.evals,  # readouts over training (the dashboard's curves)
        "forgetting": {
            sid: {"forgetting": r["forgetting"], "n_pairs": r["n_pairs"],
                  "exposures": r.get("exposures")}  # fmt: skip
            for sid, r in result.retention.items()
        },
        "data_draw": data_draw(run.mixture_dir, seed_scope, run.config.seed),
    }  # fmt: skip


def _arm_summary(mixture: MixtureReader, skills: list[SkillSpec], steps: int) -> dict[str, Any]:
    """Placed instances the runs saw (the first `steps` batches), per skill."""
    rows = mixture.composition()[:steps]
    counts = {s.id: [r["skills"].get(s.id, {}).get("count", 0) for r in rows] for s in skills}
    return {
        "mixture_dir": str(mixture.path),
        "n_batches": mixture.n_batches,
        "batch_tokens": mixture.batch_tokens,
        "placed_instances": {sid: sum(c) for sid, c in counts.items()},
        "placed_per_batch": {sid: sum(c) / max(1, len(c)) for sid, c in counts.items()},
        "exposure_batches": {sid: sum(1 for x in c if x) for sid, c in counts.items()},
        "audit": audit_summary(mixture, skills),
    }
