"""A study's analysis from a verification report's shape (training.verify.make_report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import special

from analysis import plots, study

DOSES = {"d0.5": 0.5, "d1": 1.0, "d2": 2.0, "d4": 4.0, "d8": 8.0}


def report(seeds: int = 8, natural: float = 0.0) -> dict:
    rng = np.random.default_rng(11)
    runs = []
    for arm, placed in {**DOSES, "baseline": 0.0}.items():
        for seed in range(seeds):
            d = placed + natural
            p = special.expit(3.0 * (np.log2(d) - 1.0)) if d > 0 else 0.0
            value = 0.95 if rng.random() < p else 0.5 + rng.normal(0, 0.03)
            runs.append({
                "arm": arm, "size": "nano", "seed": seed, "n_params": 120_000,
                "final": {"skills": {"cmp": {"heldout_forced_choice": value}},
                          "general_loss": 2.3 + 0.001 * placed + rng.normal(0, 0.002)},
            })  # fmt: skip
    return {
        "runs": runs,
        "arms": {a: {"placed_per_batch": {"cmp": p}} for a, p in {**DOSES, "baseline": 0}.items()},
        "settings": {"thresholds": {"cmp": {"threshold": 0.75, "metric": "forced_choice"}}},
    }


def test_points_add_the_natural_dose_and_read_the_threshold() -> None:
    runs = study.runs_from_verification(report(natural=0.25), "cmp", natural_per_batch=0.25)
    assert len(runs) == 6 * 8
    base = [r for r in runs if r.arm == "baseline"]
    assert {r.dose for r in base} == {0.25}
    assert all(r.retained == (r.readout >= 0.75) for r in runs)


def test_dose_response_study_recommends_a_dose(tmp_path: Path) -> None:
    runs = study.runs_from_verification(report(), "cmp", natural_per_batch=0.0)
    body = study.analyse("dose_response", runs, target_p=0.8, baseline="baseline")
    assert body["fit"]["nano"]["excluded_runs"] == 8  # the baseline: no instance at all
    rec = body["recommendation"]["nano"]
    low, high = rec["ci95"]
    assert low < rec["ed"]["value"] < high and rec["per_batch"] == high
    assert rec["general_loss_delta"]["n_pairs"] == 8
    assert [p["dose"] for p in body["points"]] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    (path,) = plots.dose_response(runs, tmp_path)
    assert path.stat().st_size > 10_000


def test_spacing_study_reads_periods_and_forgetting(tmp_path: Path) -> None:
    rep = report()
    periods = {"d0.5": 1, "d1": 2, "d2": 4, "d4": 8, "d8": 16}
    for run in rep["runs"]:  # the verification's per-run forgetting; none at period 1
        period = periods.get(run["arm"])
        value = None if period in (None, 1) else 0.01 * period + 0.001 * run["seed"]
        run["forgetting"] = {"cmp": {"forgetting": value, "n_pairs": 0 if value is None else 9}}
    runs = [r for r in study.runs_from_verification(rep, "cmp", 0.0, periods) if r.period]
    body = study.analyse("spacing", runs)
    assert [p["period"] for p in body["points"]] == [1, 2, 4, 8, 16]
    assert "p_trend" in body["trend"]["nano"]
    by_period = {p["period"]: p for p in body["points"]}
    assert by_period[1]["forgetting"] is None and by_period[1]["n_forgetting"] == 0
    assert by_period[8]["forgetting"] == pytest.approx(0.08 + 0.001 * 3.5)
    assert body["trend"]["nano"]["forgetting_trend"]["n"] == 4 * 8
    (path,) = plots.spacing(runs, tmp_path)
    assert path.name == "spacing_nano.png" and path.stat().st_size > 10_000


def test_size_transfer_needs_two_sizes() -> None:
    runs = study.runs_from_verification(report(), "cmp", 0.0)
    body = study.analyse("size_transfer", runs)
    assert "undetermined" in body["transfer"]


POOLS = {"fresh": None, "pool_400": 400, "pool_40": 40, "pool_4": 4}


def repetition_report(seeds: int = 6) -> dict:
    """2 per batch over 1,000 batches: 2,000 placements, fresh (train split 5,000) or from a
    pool; the seen readout rises and the held-out one falls as the pool shrinks."""
    rng = np.random.default_rng(5)
    runs = []
    for arm, pool in {**POOLS, "baseline": 0}.items():
        copies = 2000 / min(2000, pool or 5000) if arm != "baseline" else 0
        memory = 0.04 * np.log2(copies) if copies else 0.0
        for seed in range(seeds):
            scores = {"heldout_forced_choice": 0.9 - memory + rng.normal(0, 0.01)}
            if arm != "baseline":
                scores["seen_forced_choice"] = 0.9 + memory + rng.normal(0, 0.01)
            runs.append({
                "arm": arm, "size": "nano", "seed": seed,
                "final": {"skills": {"cmp": scores},
                          "general_loss": 2.3 + 0.01 * seed + 0.002 * np.log2(max(copies, 1))},
            })  # fmt: skip
    arms = {a: {"placed_per_batch": {"cmp": 2.0}, "placed_instances": {"cmp": 2000}}
            for a in POOLS}  # fmt: skip
    arms["baseline"] = {"placed_per_batch": {"cmp": 0.0}, "placed_instances": {"cmp": 0}}
    return {
        "runs": runs,
        "arms": arms,
        "settings": {"thresholds": {"cmp": {"threshold": 0.75, "metric": "forced_choice"}}},
    }


def test_repetition_study_reads_pools_copies_and_seen_readouts() -> None:
    pools = {a: {"pool_size": p, "unique_available": p or 5000} for a, p in POOLS.items()}
    runs = study.runs_from_verification(repetition_report(), "cmp", 0.0, pools=pools)
    by_arm = {r.arm: r for r in runs}
    assert by_arm["pool_4"].copies == 500 and by_arm["pool_400"].copies == 5
    assert by_arm["fresh"].copies == 1 and by_arm["fresh"].pool_size is None
    assert by_arm["baseline"].copies is None and by_arm["baseline"].seen_readout is None
    body = study.analyse("repetition", runs, baseline="baseline")
    assert [(p["pool_size"], p["copies"]) for p in body["points"]] == [
        (None, 1.0), (4, 500.0), (40, 50.0), (400, 5.0)
    ]  # fmt: skip
    assert body["points"][1]["seen_readout"] > body["points"][1]["readout"]
    assert [p["arms"] for p in body["baseline"]] == [["baseline"]]
    trend = body["trend"]["nano"]
    assert [row["pool_size"] for row in trend["points"]] == [None, 400, 40, 4]  # by copies
    assert trend["heldout_trend"]["slope"] == pytest.approx(-0.04, abs=0.01)
    assert trend["gap_trend"]["slope"] == pytest.approx(0.08, abs=0.01)
    loss = trend["points"][3]["loss_vs_baseline"]  # 0.002 x log2(500): paired, exact
    assert loss["mean"] == pytest.approx(0.002 * np.log2(500)) and loss["n_pairs"] == 6
    assert loss["within_2sd"] is True  # the seeds' own spread (0.01 a seed) is wider


def test_repetition_plot(tmp_path: Path) -> None:
    pools = {a: {"pool_size": p, "unique_available": p or 5000} for a, p in POOLS.items()}
    runs = study.runs_from_verification(repetition_report(), "cmp", 0.0, pools=pools)
    (path,) = plots.repetition(runs, tmp_path, "cmp")
    assert path.name == "repetition_nano.png" and path.stat().st_size > 10_000
