from __future__ import annotations

import pytest

from training import verdict as v


def test_wilson_interval_known_values():
    # Wilson 95% for 5/5: [n / (n + z^2), 1]; for 0/5 the mirror image.
    lo, hi = v.wilson_interval(5, 5)
    assert lo == pytest.approx(5 / (5 + v.Z95**2)) and hi == 1.0
    assert v.wilson_interval(0, 5) == pytest.approx((0.0, 1 - 5 / (5 + v.Z95**2)))
    # 8/10, a textbook value (Newcombe 1998 style): [0.490, 0.943]
    assert v.wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert v.wilson_interval(0, 0) == (0.0, 1.0)


def test_newcombe_difference_known_value():
    # Newcombe (1998), example (a): 56/70 vs 48/80 -> 0.2000, [0.0524, 0.3339]
    d, lo, hi = v.newcombe_difference(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_default_threshold():
    threshold, note = v.default_threshold(0.5)
    assert threshold == 0.75 and "0.5" in note
    assert v.default_threshold(0.0)[0] == 0.5


@pytest.mark.parametrize(
    "accuracies, outcome, p",
    [
        ([0.9, 0.95, 0.8, 0.99, 0.76], "retained", 1.0),
        ([0.5, 0.52, 0.49, 0.6, 0.51], "not_retained", 0.0),
        ([0.9, 0.95, 0.8, 0.99, 0.5], "inconclusive", 0.8),
        ([0.9, 0.5, 0.9, 0.5, 0.5], "inconclusive", 0.4),
    ],
)
def test_rule_outcomes(accuracies, outcome, p):
    row = v.verdict("cmp", "nano", "up", accuracies, threshold=0.75, chance=0.5)
    assert row["verdict"] == outcome
    assert row["p_retained"] == pytest.approx(p)
    assert row["ci95"] == pytest.approx(list(v.wilson_interval(round(p * 5), 5)))
    assert row["n_seeds"] == 5 and row["threshold"] == 0.75
    assert f"{round(p * 5)}/5 seeds retained" in row["rule"] and outcome in row["rule"]


def test_effect_vs_baseline():
    up, base = [0.9, 0.95, 0.8, 0.99, 0.76], [0.5, 0.52, 0.49, 0.6, 0.51]
    row = v.verdict("cmp", "nano", "up", up, 0.75, baseline=base)
    effect = row["effect_vs_baseline"]
    assert effect["p_retained_diff"] == 1.0
    assert effect["p_retained_diff_ci95"] == pytest.approx(
        list(v.newcombe_difference(5, 5, 0, 5)[1:])
    )
    assert effect["mean_accuracy_diff"] == pytest.approx(sum(up) / 5 - sum(base) / 5)
    lo, hi = effect["mean_accuracy_diff_ci95"]
    assert 0 < lo <= effect["mean_accuracy_diff"] <= hi
    assert v.verdict("cmp", "nano", "baseline", base, 0.75)["effect_vs_baseline"] is None


def test_bootstrap_interval_of_a_constant_is_a_point():
    assert v.bootstrap_mean_interval([0.7] * 5) == pytest.approx((0.7, 0.7))


def test_no_seeds_is_an_error():
    with pytest.raises(ValueError, match="no seeds"):
        v.verdict("cmp", "nano", "up", [], 0.75)
