import math

import numpy as np
import pytest

from curation import stats

# Garwood intervals: chi2(0.025, 2k)/2 and chi2(0.975, 2k+2)/2, from published tables.
KNOWN = {
    0: (0.0, 3.688879),
    1: (0.025318, 5.571643),
    2: (0.242209, 7.224688),
    5: (1.623486, 11.668332),
    10: (4.795389, 18.390356),
    100: (81.363991, 121.626794),
}


@pytest.mark.parametrize("count", sorted(KNOWN))
def test_poisson_ci_matches_garwood_tables(count):
    lo, hi = stats.poisson_ci(count)
    assert lo == pytest.approx(KNOWN[count][0], abs=2e-6)
    assert hi == pytest.approx(KNOWN[count][1], rel=1e-6)


def test_poisson_ci_large_counts_are_near_normal():
    k = 10**6
    lo, hi = stats.poisson_ci(k)
    assert lo == pytest.approx(k - 1.96 * math.sqrt(k), rel=1e-5)
    assert hi == pytest.approx(k + 1.96 * math.sqrt(k), rel=1e-5)


def test_gamma_ppf_inverts_gamma_cdf():
    for a in (0.5, 1.0, 3.0, 40.0, 2500.0):
        for p in (0.001, 0.025, 0.5, 0.975):
            assert stats._gamma_p(a, stats.gamma_ppf(p, a)) == pytest.approx(p, rel=1e-9)


def test_rate_and_per_batch():
    rate, ci = stats.rate_per_million(5, 2_000_000)
    assert rate == 2.5
    assert ci == pytest.approx([1.623486 / 2, 11.668332 / 2], rel=1e-6)
    assert stats.rate_per_million(3, 0) == (0.0, [0.0, 0.0])
    assert stats.per_batch(10, 1_000_000, 250_000) == 2.5


def test_gap_stats_definitions():
    positions = [500, 0, 100, 1100]  # unsorted on purpose: corpus order is restored
    gap_tokens, gap_batches = stats.gap_stats(positions, batch_tokens=100)
    gaps = np.array([100, 400, 600])
    assert gap_tokens == {
        "mean": gaps.mean(),
        "median": 400.0,
        "p90": float(np.percentile(gaps, 90)),
        "max": 600.0,
        "cv": gaps.std() / gaps.mean(),
    }
    assert gap_batches["mean"] == pytest.approx(gap_tokens["mean"] / 100)
    assert gap_batches["max"] == 6.0


def test_gap_stats_need_two_instances():
    assert stats.gap_stats([], 10) == (None, None)
    assert stats.gap_stats([42], 10) == (None, None)
    same_place, _ = stats.gap_stats([7, 7], 10)
    assert same_place["mean"] == 0.0 and same_place["cv"] is None


def test_log_histogram_counts_every_gap():
    values = np.array([0, 1, 5, 50, 500, 5000, 5000])
    hist = stats.log_histogram(values)
    assert hist["zeros"] == 1
    assert sum(hist["counts"]) == 6
    assert hist["edges"][0] <= 1 and hist["edges"][-1] >= 5000


def test_ratio_estimate():
    ratio, stderr = stats.ratio_estimate([40, 80, 120], [10, 20, 30])
    assert ratio == 4.0 and stderr == 0.0
    ratio, stderr = stats.ratio_estimate([40, 90, 110], [10, 20, 30])
    assert ratio == 4.0 and stderr > 0
    with pytest.raises(ValueError):
        stats.ratio_estimate([], [])
