"""A verification: arms x sizes x seeds of training runs, verdicts and plots.

Each (arm, size, seed) is its own resumable unit in `trainer.run_dir(workdir, key)`
(see trainer.train_run): a finished run's result.json is reused, never retrained,
so a verification interrupted anywhere picks up where it stopped.

With workers > 1 runs go to a pool of spawned processes, one torch thread each
(training.parallel; on 2 cores two single-thread runs beat one two-thread run). A pool
cannot start inside a daemonic process, such as a Celery prefork worker: there, keep
workers=1 and the runs train in the calling process.

A caller that records each run (the service) passes `on_event`: it receives every run's
events (training.events), in the calling process, wherever the run trains; a run that
finished in an earlier attempt reports its RunFinished first. `progress(fraction,
message)` gets the whole verification's progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from curation.atomic import write_json_atomic
from curation.skills.probes import probe_instances
from curation.skills.spec import SkillSpec
from training import verdict
from training.data import MixtureReader, open_mixture
from training.evaluate import READOUTS, EvalSpec
from training.events import Event, OnEvent, RunFinished, RunKey, StepDone, describe
from training.parallel import RunScope, RunSpec, train, train_runs
from training.report import plot_verification
from training.trainer import RESULT, RunResult, TrainConfig, run_dir

Progress = Callable[[float, str], None]

COMPARED = ("tokenizer", "corpus", "seq_len", "batch_tokens")
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
    skills: list[SkillSpec], threshold: float | dict[str, float] | None, metric: str | None
) -> dict:
    out = {}
    for skill in skills:
        probes = probe_instances(skill)
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
    return out


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
    run, here or in the pool (training.parallel.RunScope). seed_group: seeds of one arm
    and size trained together as one grouped model, at most this many (1: each alone;
    None: automatic; training.parallel.plan_groups).
    """
    started, work = time.perf_counter(), Path(workdir)
    for skill in skills:
        skill_metric(skill, metric)  # refuse before training
    mixtures = {arm: open_mixture(path) for arm, path in arms.items()}
    check_arms(mixtures)
    spec = EvalSpec(skills=list(skills), heldout=heldout_docs, **(eval_options or {}))
    base = replace(config or TrainConfig(), token_budget=token_budget, eval_every=eval_every)
    base = replace(base, device=device, num_threads=1 if workers > 1 else base.num_threads)
    runs = plan_runs(mixtures, sizes, seeds, work, base)
    tracker = _Tracker(runs, progress, on_event)
    # Runs finished in an earlier attempt: reported (RunFinished), never retrained.
    results = {
        run.key: train(run, spec, tracker, run_scope)
        for run in runs
        if (Path(run.out_dir) / RESULT).exists()
    }
    todo = [run for run in runs if run.key not in results]
    results |= train_runs(
        todo, spec, workers, tracker,
        seed_group=seed_group, initializer=initializer, run_scope=run_scope,
    )  # fmt: skip
    in_order = [(run, results[run.key]) for run in runs]
    report = make_report(in_order, mixtures, spec.skills, threshold, baseline, work, metric)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(work / "report.json", report, indent=1)
    tracker.progress(1.0, "verification done")
    return report


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
) -> list[RunSpec]:
    """One run per (size, seed, arm), arms interleaved, each in its run_dir."""
    keys = [RunKey(arm, size, seed) for size in sizes for seed in seeds for arm in mixtures]
    return [
        RunSpec(key, str(mixtures[key.arm].path), str(run_dir(workdir, key)),
                replace(base, size=key.size, seed=key.seed))
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
) -> dict[str, Any]:
    """Verdicts, run and arm summaries, and plots (into workdir/plots) from finished runs.

    For a caller that trains the runs itself: plan_runs, training.parallel.train per run,
    then this.
    """
    if baseline not in mixtures:
        baseline = None
    lines = _thresholds(skills, threshold, metric)
    verdicts = _verdicts(results, lines, baseline)
    runs = [(run.key.arm, run.key.size, run.key.seed, r) for run, r in results]
    steps = results[0][1].steps if results else 0
    first = results[0][0].config if results else TrainConfig()
    return {
        "verdicts": verdicts,
        "runs": [_run_summary(j, r) for j, r in results],
        "arms": {arm: _arm_summary(m, skills, steps) for arm, m in mixtures.items()},
        "settings": {
            "sizes": list(dict.fromkeys(j.key.size for j, _ in results)),
            "seeds": list(dict.fromkeys(j.key.seed for j, _ in results)),
            "steps": steps, "baseline": baseline, "thresholds": lines,
            "train": {k: v for k, v in vars(first).items() if k not in ("size", "seed")},
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
        base = None
        if baseline is not None and arm != baseline:
            base = _values([r for _, r in cells[(skill_id, size, baseline)]], skill_id, readout)
        row = verdict.verdict(
            skill_id, size, arm, values, line["threshold"], base, line["chance"],
            line["threshold_rule"], line["metric"],
        )  # fmt: skip
        row["readouts"] = {
            r: verdict.summary([_final(x, skill_id, f"heldout_{r}") for x in cell])
            for r in READOUTS
        }
        row["strata"] = _strata(cell, seeds, skill_id, values, line, readout)
        row["warnings"] = [s["warning"] for s in row["strata"].values() if s["warning"]]
        row["mean_seen_accuracy"] = _mean([_final(r, skill_id, "seen_acc") for r in cell])
        row["mean_general_loss"] = _mean([r.final.get("general_loss") for r in cell])
        row["mean_forgetting"] = _mean(
            [r.retention.get(skill_id, {}).get("forgetting") for r in cell]
        )
        out.append(row)
    return out


def _run_summary(run: RunSpec, result: RunResult) -> dict[str, Any]:
    return {
        "arm": run.key.arm, "size": run.key.size, "seed": run.key.seed, "dir": run.out_dir,
        "steps": result.steps, "tokens": result.tokens, "seconds": result.seconds,
        "n_params": result.model["n_params"], "resumes": result.resumes,
        "final": result.final,
        "forgetting": {
            sid: {"forgetting": r["forgetting"], "n_pairs": r["n_pairs"]}
            for sid, r in result.retention.items()
        },
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
    }
