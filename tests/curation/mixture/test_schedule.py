"""Spacing schedules: exact counts per batch, totals, and seeded randomness."""

import numpy as np
import pytest

from curation.mixture import schedule


def rng(seed):
    return np.random.default_rng(seed)


def test_uniform_two_and_a_half_alternates_two_and_three():
    counts = schedule.uniform_counts(2.5, 10)
    assert counts.tolist() == [2, 3] * 5


@pytest.mark.parametrize("rate", [0.1, 1 / 3, 0.7, 1.0, 2.5, 4.0, 12.75])
def test_uniform_is_as_even_as_possible(rate):
    n = 997
    counts = schedule.uniform_counts(rate, n)
    assert counts.max() - counts.min() <= 1
    running = np.concatenate([[0], np.cumsum(counts)])
    exact = schedule.exact_rate(rate)
    assert running.tolist() == [b * exact.numerator // exact.denominator for b in range(n + 1)]


def test_uniform_below_one_spaces_single_placements():
    counts = schedule.uniform_counts(0.1, 50)
    assert np.flatnonzero(counts).tolist() == [9, 19, 29, 39, 49]
    assert set(counts.tolist()) == {0, 1}


def test_every_places_n_in_every_kth_batch_and_none_elsewhere():
    counts = schedule.every_counts(10, 10, 95)
    assert np.flatnonzero(counts).tolist() == list(range(0, 95, 10))
    assert set(counts[counts > 0].tolist()) == {10}
    assert counts.sum() == 100


def test_random_matches_the_target_in_expectation():
    n, rate = 200, 1.5
    runs = np.stack([schedule.random_counts(rate, n, rng(seed)) for seed in range(300)])
    assert set(runs.sum(axis=1).tolist()) == {300}  # the uniform total, every seed
    per_batch = runs.mean(axis=0)  # expectation over seeds, per batch
    assert abs(per_batch.mean() - rate) < 1e-9
    assert np.abs(per_batch - rate).max() < 0.5  # each batch near the rate (sd ~0.07)
    assert runs.std(axis=0).mean() > 1.0  # and really random: ~Poisson(1.5) per batch


def test_random_is_seeded():
    a, b = (schedule.random_counts(2.0, 50, rng(1)) for _ in range(2))
    assert a.tolist() == b.tolist()
    assert a.tolist() != schedule.random_counts(2.0, 50, rng(2)).tolist()


def test_clustered_bursts_keep_the_uniform_total():
    n = schedule.CLUSTER_WINDOW * 4 + 7
    counts = schedule.clustered_counts(2.0, n, rng(0))
    assert counts.sum() == schedule.uniform_counts(2.0, n).sum()
    for start in range(0, n, schedule.CLUSTER_WINDOW):
        window = counts[start : start + schedule.CLUSTER_WINDOW]
        dosed = np.flatnonzero(window)
        assert dosed.size <= schedule.CLUSTER_BURST
        assert dosed.max() - dosed.min() < schedule.CLUSTER_BURST  # one run of batches
    full = counts[: schedule.CLUSTER_WINDOW]
    assert full.sum() == 2 * schedule.CLUSTER_WINDOW and full.max() == 20


def test_slot_offsets_spread_placements_over_the_batch():
    assert schedule.slot_offsets(4, 16) == [0, 4, 8, 12]
    assert schedule.slot_offsets(3, 8) == [0, 2, 5]
    assert schedule.slot_offsets(0, 8) == []
    with pytest.raises(ValueError, match="do not fit"):
        schedule.slot_offsets(9, 8)


def test_target_positions_follow_the_slots():
    counts = np.array([2, 0, 1])
    assert schedule.target_positions(counts, 4, 10).tolist() == [0, 20, 80]


def test_shared_rows_pack_in_order_and_never_cross_a_row():
    assert schedule.shared_rows([5, 9, 3], 4, 10) == [[0], [1], [2]]  # fit one to a row
    assert schedule.shared_rows([4, 4, 3, 6, 4, 10], 4, 10) == [[0, 1], [2, 3], [4], [5]]
    assert schedule.per_row(9, 4) == 3 and schedule.per_row(3, 4) == 1
    with pytest.raises(ValueError, match="9 placements of 46 tokens fill 5 rows when packed, "
                       "and the batch has 4 rows of 10 tokens"):  # fmt: skip
        schedule.shared_rows([6, 4] * 4 + [6], 4, 10)
    with pytest.raises(ValueError, match="a placement of 11 tokens is longer than a row of 10"):
        schedule.shared_rows([1, 1, 1, 1, 11], 4, 10)


def test_target_positions_of_a_shared_batch_spread_over_its_tokens():
    assert schedule.target_positions(np.array([0, 6]), 4, 10).tolist() == [
        40, 46, 53, 60, 66, 73
    ]  # fmt: skip
