"""Spacing and repetition statistics, each checked against a library's own answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import trends
from training.verdict import wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 5), (3, 10), (10, 10), (7, 20)])
def test_wilson_is_the_verdicts_wilson(k: int, n: int) -> None:
    assert trends.wilson(k, n) == pytest.approx(list(wilson_interval(k, n)), abs=1e-9)


def test_linear_trend_agrees_with_statsmodels() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(6)
    x = np.repeat([0.0, 1, 2, 3, 4], 5)
    y = 0.9 - 0.05 * x + rng.normal(0, 0.03, x.size)
    out = trends.linear_trend(x, y)
    ols = sm.OLS(y, sm.add_constant(x)).fit()
    assert out["slope"] == pytest.approx(ols.params[1])
    assert out["ci95"] == pytest.approx(list(ols.conf_int()[1]))


def test_paired_difference_agrees_with_scipy() -> None:
    arm = {0: 2.31, 1: 2.35, 2: 2.29, 3: 2.40, 4: 2.33}
    base = {0: 2.30, 1: 2.31, 2: 2.30, 3: 2.36, 4: 2.30, 9: 5.0}  # seed 9 has no pair
    out = trends.paired_difference(arm, base)
    seeds = sorted(arm)
    ci = stats.ttest_rel([arm[s] for s in seeds], [base[s] for s in seeds]).confidence_interval()
    assert out["n_pairs"] == 5
    assert out["ci95"] == pytest.approx([ci.low, ci.high])


def test_spacing_reads_a_falling_trend() -> None:
    periods = np.repeat([1, 2, 4, 8, 16], 10)
    rng = np.random.default_rng(7)
    p = 1 / (1 + np.exp(-(2.0 - 1.0 * np.log2(periods))))
    won = (rng.random(periods.size) < p).astype(int)
    readout = 0.95 - 0.05 * np.log2(periods) + rng.normal(0, 0.02, periods.size)
    out = trends.spacing(periods.tolist(), won.tolist(), readout.tolist())
    assert [pt["period"] for pt in out["points"]] == [1, 2, 4, 8, 16]
    assert out["readout_trend"]["ci95"][1] < 0
    assert out["p_trend"]["value"] < 0
    assert "forgetting_trend" not in out


def test_spacing_trends_forgetting_over_the_runs_that_measured_it() -> None:
    periods = np.repeat([1, 2, 4, 8], 6)
    rng = np.random.default_rng(3)
    rise = 0.02 * np.log2(periods) + rng.normal(0, 0.005, periods.size)
    # Period 1 has an exposure in every batch: nothing between exposures to measure.
    forgetting = [None if n == 1 else float(f) for n, f in zip(periods, rise, strict=True)]
    out = trends.spacing(periods.tolist(), [1] * periods.size, [0.9] * periods.size, forgetting)
    fit = stats.linregress(np.log2(periods[periods > 1]), rise[periods > 1])
    assert out["forgetting_trend"]["n"] == 18
    assert out["forgetting_trend"]["slope"] == pytest.approx(fit.slope)
    assert out["forgetting_trend"]["ci95"][0] > 0


def test_sawtooth_recovers_a_half_life() -> None:
    # Exposures every 100 steps; after each the readout halves every 50 steps.
    exposures = [0, 100, 200, 300]
    steps = [s for e in exposures for s in range(e + 10, e + 101, 10)]
    readouts = [0.9 * 2 ** (-((s - 1) % 100 - 9) / 50) for s in steps]
    out = trends.sawtooth(steps, readouts, exposures)
    assert out["half_life_steps"] == pytest.approx(50, rel=0.05)
    assert out["drop_per_exposure"] == pytest.approx(0.9 * (1 - 2 ** (-90 / 50)), rel=0.01)
    assert trends.sawtooth(steps, [0.8] * len(steps), exposures)["half_life_steps"] is None


def test_repetition_pairs_by_seed_and_trends_the_gap() -> None:
    seeds = range(6)
    base = {s: 2.3 + 0.01 * s for s in seeds}
    points = []
    for pool, copies in ((None, 1.0), (400, 10.0), (40, 100.0), (4, 1000.0)):
        gap = 0.05 * math.log2(copies)
        points.append(
            {
                "pool_size": pool,
                "copies": copies,
                "loss": {s: base[s] + 0.001 * math.log2(copies) + 0.0005 * (s % 2) for s in seeds},
                "baseline_loss": base,
                "seen": {s: 0.9 + gap + 0.01 * (s % 3) for s in seeds},
                "heldout": {s: 0.9 for s in seeds},
            }
        )
    out = trends.repetition(points)
    assert out["gap_trend"]["slope"] == pytest.approx(0.05, abs=0.01)
    assert out["points"][3]["loss_vs_baseline"]["n_pairs"] == 6


def test_repetition_reads_the_honest_null_and_what_it_cannot_pair() -> None:
    base = {0: 2.30, 1: 2.31, 2: 2.29}
    costly = {s: loss + 0.2 for s, loss in base.items()}  # far beyond 2 SD of the baseline
    points = [
        {"pool_size": 4, "copies": 500.0, "loss": costly, "baseline_loss": base,
         "seen": {0: 0.99, 1: 0.98, 2: 0.97}, "heldout": {0: 0.6, 1: 0.62, 2: 0.58}},
        {"pool_size": None, "copies": 1.0, "loss": {}, "baseline_loss": base,
         "seen": {0: 0.9}, "heldout": {0: 0.9, 1: 0.91, 2: 0.89}},
    ]  # fmt: skip
    out = trends.repetition(points)
    pooled, fresh = out["points"]
    assert pooled["loss_vs_baseline"]["mean"] == pytest.approx(0.2)
    assert pooled["loss_vs_baseline"]["baseline_sd"] == pytest.approx(0.01)
    assert pooled["loss_vs_baseline"]["within_2sd"] is False
    assert "two or more seeds" in fresh["loss_vs_baseline"]["undetermined"]
    assert "seen_minus_heldout" not in fresh  # one seed with both readouts: no interval
    held = trends.linear_trend([math.log2(500)] * 3 + [0.0] * 3, [0.6, 0.62, 0.58, 0.9, 0.91, 0.89])
    assert out["heldout_trend"]["slope"] == pytest.approx(held["slope"])
    assert "undetermined" in out["gap_trend"]  # the gap is known at one number of copies only
