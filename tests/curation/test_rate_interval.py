"""The scan's clustering-aware rate interval (curation.stats.cluster_dispersion and
clustered_rate_per_million), against statsmodels where it is installed and against a
direct per-document computation always, plus coverage on simulated corpora."""

import math

import numpy as np
import pytest

from curation import stats
from tests.conftest import need_module


def corpus(rng, n_docs, clumps, clump_size, sdlog=1.0):
    """Document lengths and counts: a Poisson number of clumps per document (mean
    proportional to its length), each clump of geometric size with mean `clump_size`;
    `clump_size=1` gives Poisson counts. Returns (lengths, counts, true rate per byte)."""
    t = (rng.lognormal(7.5, sdlog, n_docs).round() + 1).astype(np.int64)
    lam = clumps / t.sum()
    c = rng.poisson(lam * t)
    if clump_size == 1:
        y = c
    else:
        y = np.array([rng.geometric(1 / clump_size, k).sum() if k else 0 for k in c])
    return t, y.astype(np.int64), lam * clump_size


def dispersion_from_sums(t, y, groups=None):
    """The dispersion computed from the five sums the partials carry (units = groups)."""
    if groups is not None:
        t, y = np.bincount(groups, t).astype(np.int64), np.bincount(groups, y).astype(np.int64)
    ti, yi = [int(v) for v in t], [int(v) for v in y]
    return stats.cluster_dispersion(
        sum(yi),
        sum(ti),
        sum(v * v for v in yi),
        sum(a * b for a, b in zip(yi, ti, strict=True)),
        sum(v * v for v in ti),
        len(ti),
    )


def test_dispersion_is_the_cluster_robust_variance():
    rng = np.random.default_rng(0)
    t, y, _ = corpus(rng, 3000, 60, 4)
    files = rng.integers(0, 9, t.size)
    Y, T, n = y.sum(), t.sum(), t.size
    mu = Y * t / T
    direct = ((y - mu) ** 2).sum() / Y * n / (n - 1)
    assert dispersion_from_sums(t, y) == pytest.approx(direct, rel=1e-12)
    Yg, Tg = np.bincount(files, y), np.bincount(files, t)
    by_file = ((Yg - Y * Tg / T) ** 2).sum() / Y * 9 / 8
    assert dispersion_from_sums(t, y, files) == pytest.approx(by_file, rel=1e-12)


def test_dispersion_and_interval_match_statsmodels():
    sm = need_module("statsmodels.api", "the dev extra, `make install`")
    rng = np.random.default_rng(1)
    t, y, _ = corpus(rng, 20_000, 3000, 3)
    files = rng.integers(0, 12, t.size)
    X = np.ones((t.size, 1))

    def fit(groups):
        model = sm.GLM(y, X, family=sm.families.Poisson(), offset=np.log(t))
        return model.fit(cov_type="cluster", cov_kwds={"groups": groups})

    Y = int(y.sum())
    by_doc, by_file = fit(np.arange(t.size)), fit(files)
    phi = dispersion_from_sums(t, y)
    assert phi == pytest.approx(by_doc.bse[0] ** 2 * Y, rel=1e-9)
    assert dispersion_from_sums(t, y, files) == pytest.approx(by_file.bse[0] ** 2 * Y, rel=1e-9)
    # Many effective instances (~3,000): the gamma interval is the GLM's Wald interval.
    rate, ci, _ = stats.clustered_rate_per_million(Y, float(t.sum()), phi)
    wald = np.exp(by_doc.conf_int()[0]) * 1e6
    assert rate == pytest.approx(math.exp(by_doc.params[0]) * 1e6, rel=1e-9)
    assert ci == pytest.approx(list(wald), rel=0.01)


def test_phi_of_one_is_the_poisson_interval():
    for count in (0, 1, 5, 100):
        rate, ci, phi = stats.clustered_rate_per_million(count, 2e6, 1.0)
        assert phi == 1.0 and (rate, ci) == stats.rate_per_million(count, 2e6)
    # Underdispersed or undefined (no instance) falls back to Poisson, never narrower.
    assert stats.clustered_rate_per_million(5, 2e6, 0.3)[1] == stats.rate_per_million(5, 2e6)[1]
    assert stats.clustered_rate_per_million(0, 2e6, None)[1] == stats.rate_per_million(0, 2e6)[1]
    assert stats.cluster_dispersion(0, 100, 0, 0, 10_000, 5) is None
    assert stats.cluster_dispersion(3, 100, 9, 300, 10_000, 1) is None


def test_one_instance_in_a_short_document_is_not_clustering():
    # 1,000 documents of 1,000 bytes and one of 10 bytes holding the only instance.
    t = np.array([1000] * 1000 + [10])
    y = np.array([0] * 1000 + [1])
    assert dispersion_from_sums(t, y) == pytest.approx(1.0, abs=0.01)


def test_all_instances_in_a_few_documents_widen_the_interval():
    t = np.full(5000, 2000, dtype=np.int64)
    y = np.zeros(5000, dtype=np.int64)
    y[[7, 1200, 3333, 4999]] = 25  # 100 instances in 4 documents
    phi = dispersion_from_sums(t, y)
    assert phi == pytest.approx(25, rel=0.01)  # about the clump size
    _, ci, _ = stats.clustered_rate_per_million(100, float(t.sum()), phi)
    _, poisson = stats.rate_per_million(100, float(t.sum()))
    assert (ci[1] - ci[0]) / (poisson[1] - poisson[0]) > 4


def test_poisson_counts_keep_about_the_poisson_width():
    rng = np.random.default_rng(2)
    ratios = []
    for _ in range(20):
        t, y, _ = corpus(rng, 5000, 300, 1)
        phi = dispersion_from_sums(t, y)
        _, ci, _ = stats.clustered_rate_per_million(int(y.sum()), float(t.sum()), phi)
        _, poisson = stats.rate_per_million(int(y.sum()), float(t.sum()))
        ratios.append((ci[1] - ci[0]) / (poisson[1] - poisson[0]))
    # phi is floored at 1 and estimated around 1 (sd ~ 0.1 at 300 instances): within 15%.
    assert 1.0 <= float(np.median(ratios)) < 1.1 and max(ratios) < 1.15


def coverage(seed, reps, n_docs, clumps, clump_size):
    rng = np.random.default_rng(seed)
    hits = {"clustered": 0, "poisson": 0}
    for _ in range(reps):
        t, y, lam = corpus(rng, n_docs, clumps, clump_size)
        count, tokens, truth = int(y.sum()), float(t.sum()), lam * 1e6
        _, ci, _ = stats.clustered_rate_per_million(count, tokens, dispersion_from_sums(t, y))
        _, poisson = stats.rate_per_million(count, tokens)
        hits["clustered"] += ci[0] <= truth <= ci[1]
        hits["poisson"] += poisson[0] <= truth <= poisson[1]
    return {k: v / reps for k, v in hits.items()}


def test_coverage_on_simulated_clustered_corpora():
    # 300 corpora of 2,000 documents, 40 clumps of mean size 5 (~200 instances) each:
    # the clustered interval covers the true rate about 95% of the time (binomial sd of
    # the estimate 0.013: tolerance 0.90-0.99), the Poisson one about half the time.
    got = coverage(seed=3, reps=300, n_docs=2000, clumps=40, clump_size=5)
    assert 0.90 <= got["clustered"] <= 0.99
    assert got["poisson"] < 0.7
