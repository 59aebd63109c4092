from __future__ import annotations

import pytest

from tests.conftest import need_module
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


def test_seed_looks_are_fixed_by_min_and_max_seeds():
    assert v.seed_looks() == [10, 20, 40]
    assert v.seed_looks(5, 40) == [5, 10, 20, 40]
    assert v.seed_looks(10, 30) == [10, 20, 30] and v.seed_looks(7, 7) == [7]
    with pytest.raises(ValueError, match="min_seeds"):
        v.seed_looks(20, 10)


def test_looks_z_splits_alpha_over_the_looks():
    stats = need_module("scipy.stats", "make install (scipy: the analysis extra)")
    assert v.looks_z(1) == pytest.approx(v.Z95, abs=1e-9)
    assert v.looks_z(3) == pytest.approx(stats.norm.ppf(1 - 0.05 / 6), abs=1e-9)


def test_next_look_adds_seeds_until_every_cell_is_decided():
    looks = [10, 20, 40]
    assert v.next_look({}, looks) == 10  # nothing trained: the first look
    assert v.next_look({"a": (3, 5)}, looks) == 10  # the first look is not complete
    # 10/10 retained is decided even at the looks' z; 6/10 is not: the next look.
    assert v.next_look({"a": (10, 10), "b": (0, 10)}, looks) is None
    assert v.next_look({"a": (10, 10), "b": (6, 10)}, looks) == 20
    assert v.next_look({"a": (20, 20), "b": (12, 20)}, looks) == 40
    assert v.next_look({"a": (40, 40), "b": (20, 40)}, looks) is None  # the last look
    # The seeds so far are the fewest any cell has.
    assert v.next_look({"a": (20, 20), "b": (6, 10)}, looks) == 20
    # With the plain 95% z, 15/20 decides (lower bound 0.53); at the looks' z it does not.
    assert v.wilson_interval(15, 20)[0] > 0.5 > v.wilson_interval(15, 20, v.looks_z(3))[0]
    assert v.next_look({"a": (15, 20)}, looks, z=v.Z95) is None
    assert v.next_look({"a": (15, 20)}, looks) == 40
    with pytest.raises(ValueError, match="increasing"):
        v.next_look({}, [20, 10])


def test_given_outcome_paired_effect_and_threshold_sensitivity():
    values = [0.95, 0.97, 0.52, 0.5, 0.82]
    got = v.given_outcome(values, 0.75)
    assert got["given_success"] == pytest.approx(0.9133, abs=1e-4) and got["n_success"] == 3
    assert got["given_failure"] == pytest.approx(0.51) and got["n_failure"] == 2
    assert v.given_outcome([0.1], 0.75)["given_success"] is None
    paired = v.paired_effect({0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.5, 2: 0.6, 3: 0.1})
    assert paired["seeds"] == [1, 2] and paired["diffs"] == pytest.approx([0.3, 0.1])
    assert paired["mean_diff"] == pytest.approx(0.2)
    lo, hi = paired["mean_diff_ci95"]
    assert 0.1 - 1e-9 <= lo <= 0.2 <= hi <= 0.3 + 1e-9
    assert v.paired_effect({0: 1.0}, {1: 0.0}) is None
    table = v.threshold_sensitivity(values, 0.75)
    assert [row["offset"] for row in table] == list(v.SENSITIVITY_OFFSETS)
    assert [row["threshold"] for row in table] == pytest.approx([0.65, 0.7, 0.75, 0.8, 0.85])
    assert [row["n_retained"] for row in table] == [3, 3, 3, 3, 2]  # 0.82 fails at 0.85
    assert table[2]["p_retained"] == pytest.approx(0.6) and table[4]["verdict"] != "retained"
