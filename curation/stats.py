"""Pure math for frequency reports: rate intervals, dispersion, spacing statistics.

No I/O here, so every number a scan reports can be checked without files.
Token positions and counts are in whatever token unit the scan uses (bytes by
default); the functions do not care which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from statistics import NormalDist
from typing import Any

import numpy as np

PER_MILLION = 1_000_000


def _gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) (series below a+1, continued fraction above)."""
    if x <= 0.0:
        return 0.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-16:
            n += 1.0
            term *= x / n
            total += term
        return min(1.0, total * math.exp(log_prefactor))
    # Modified Lentz continued fraction for Q(a, x).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    i = 0
    while True:
        i += 1
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16 or i > 10_000_000:
            break
    return max(0.0, 1.0 - math.exp(log_prefactor) * h)


def gamma_ppf(p: float, a: float) -> float:
    """Quantile of the Gamma(a, 1) distribution: the x with P(a, x) = p.

    Newton steps from the Wilson-Hilferty approximation, kept inside a bisection
    bracket so they cannot diverge; relative tolerance 1e-12.
    """
    if not 0.0 < p < 1.0 or a <= 0.0:
        raise ValueError(f"gamma_ppf needs 0 < p < 1 and a > 0, got p={p}, a={a}")
    z = NormalDist().inv_cdf(p)
    guess = a * (1.0 - 1.0 / (9.0 * a) + z / (3.0 * math.sqrt(a))) ** 3
    lo, hi = 0.0, max(1.0, 2.0 * a)
    while _gamma_p(a, hi) < p:
        lo, hi = hi, 2.0 * hi
    x = guess if lo < guess < hi else 0.5 * (lo + hi)
    for _ in range(200):
        f = _gamma_p(a, x) - p
        if f < 0:
            lo = x
        else:
            hi = x
        density = math.exp(-x + (a - 1.0) * math.log(x) - math.lgamma(a))
        step = f / density if density > 0 else math.inf
        nxt = x - step
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - x) <= 1e-12 * max(x, 1e-300) or hi - lo <= 1e-12 * hi:
            return nxt
        x = nxt
    return x


def poisson_ci(count: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for the mean of a Poisson variable observed as `count`.

    lower = Gamma quantile (alpha/2, count), 0 when count is 0;
    upper = Gamma quantile (1 - alpha/2, count + 1). These are the chi-square
    forms chi2(alpha/2, 2k)/2 and chi2(1-alpha/2, 2k+2)/2. The interval covers
    the true mean with probability at least `level` for every mean, which
    matters for the rare skills this product is about (counts of 0, 1, 5).
    """
    if count < 0:
        raise ValueError("a count cannot be negative")
    alpha = 1.0 - level
    lower = 0.0 if count == 0 else gamma_ppf(alpha / 2.0, count)
    upper = gamma_ppf(1.0 - alpha / 2.0, count + 1)
    return lower, upper


def rate_per_million(count: int, tokens: float, level: float = 0.95) -> tuple[float, list[float]]:
    """Instances per million tokens and its exact interval: (rate, [lo, hi]).

    The token count is treated as known exactly; only the instance count is random.
    """
    if tokens <= 0:
        return 0.0, [0.0, 0.0]
    lo, hi = poisson_ci(count, level)
    scale = PER_MILLION / tokens
    return count * scale, [lo * scale, hi * scale]


# The rate interval's allowance for clustering. SCIENCE.md asks for a bootstrap over
# documents; its large-sample limit is the cluster-robust ("sandwich") variance of the
# count, sum over units of (y_i - mu_i)^2, which needs only five sums that each rank keeps
# per file as integers (sum y^2, sum y*t over documents with an instance; sum t^2, sum t,
# documents over all), so partials stay small and merge exactly in any order. A real
# bootstrap would carry every document's count and length to the merge (8-16 bytes a
# document, matched or not) and depend on a resampling seed. The Pearson (quasi-Poisson
# X2 / df) dispersion was the other candidate: it weights a document by 1 / mu_i, so one
# instance in a short document reads as clustering (phi ~ mean length / its length); the
# sandwich does not assume Var(y_i) proportional to mu_i, and covered as well or better in
# simulation (benchmarks/bench_rate_interval.py).
RATE_INTERVAL_METHOD = "cluster_robust_gamma"


def cluster_dispersion(
    instances: int,
    exposure: int,
    sum_sq: int,
    sum_count_exposure: int,
    sum_exposure_sq: int,
    units: int,
) -> float | None:
    """Variance of the instance count over its Poisson variance, units as clusters.

    Each unit i (a document, a file) has count y_i and exposure t_i (its length);
    the fitted mean is mu_i = t_i * Y / T (Y = sum y_i, T = sum t_i), and

        phi = G / (G - 1) * sum (y_i - mu_i)^2 / Y

    with G units: Y * Var(log rate) of the cluster-robust covariance of a
    Poisson GLM with an offset (statsmodels `cov_type="cluster"`, groups = the
    units), i.e. the design effect of the clustering. 1 for Poisson counts;
    about the mean clump size when instances come in clumps. The square is
    expanded into sums (sum y^2 - 2 Y/T sum y*t + (Y/T)^2 sum t^2) and taken in
    exact rational arithmetic, so no cancellation and no dependence on order.
    None when it is not defined: no instance, or fewer than two units.
    """
    if instances <= 0 or units < 2 or exposure <= 0:
        return None
    lam = Fraction(instances, exposure)
    squares = sum_sq - 2 * lam * sum_count_exposure + lam * lam * sum_exposure_sq
    return float(Fraction(units, units - 1) * squares / instances)


def clustered_rate_per_million(
    count: int, tokens: float, dispersion: float | None, level: float = 0.95
) -> tuple[float, list[float], float]:
    """Rate per million tokens with an interval that allows for clustering: (rate, [lo, hi], phi).

    The dispersion phi (from `cluster_dispersion`) says the count varies phi
    times as much as a Poisson count of the same mean: instances come in
    clumps. The count is then worth Y / phi independent instances (Kish's
    effective sample size), so the interval is the exact Garwood interval of
    that effective count, non-integer, scaled back by phi:

        lo = phi * Gamma_ppf(alpha/2, Y/phi),  hi = phi * Gamma_ppf(1 - alpha/2, Y/phi + 1)

    Its variance is phi * Y; for many effective instances it agrees with the
    GLM's cluster-robust Wald interval exp(log(lam) +- z*sqrt(phi/Y)), while it
    stays the exact Poisson interval for phi = 1 (few, unclustered instances:
    counts of 0, 1, 5 are what this product is about). phi is
    floored at 1: fewer clumps than Poisson is no reason to trust a rate more,
    and no instance (phi undefined) gives the Poisson interval.
    """
    phi = max(1.0, dispersion) if dispersion is not None else 1.0
    if tokens <= 0:
        return 0.0, [0.0, 0.0], phi
    alpha = 1.0 - level
    effective = count / phi
    lower = 0.0 if count == 0 else phi * gamma_ppf(alpha / 2.0, effective)
    upper = phi * gamma_ppf(1.0 - alpha / 2.0, effective + 1.0)
    scale = PER_MILLION / tokens
    return count * scale, [lower * scale, upper * scale], phi


def per_batch(instances: int, tokens: float, batch_tokens: int) -> float:
    """Expected instances in one batch of `batch_tokens`: instances * batch_tokens / tokens."""
    return instances * batch_tokens / tokens if tokens > 0 else 0.0


def summarize(values: np.ndarray) -> dict[str, float | None] | None:
    """mean, median, p90, max and cv (population std / mean) of `values`; None when empty.

    p90 uses linear interpolation between order statistics (numpy's default).
    cv is None when the mean is 0 (every gap zero: instances at one position).
    """
    if values.size == 0:
        return None
    mean = float(values.mean())
    return {
        "mean": mean,
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "max": float(values.max()),
        "cv": float(values.std() / mean) if mean > 0 else None,
    }


def gaps(positions: Sequence[float] | np.ndarray) -> np.ndarray:
    """Distances between consecutive instances, after sorting positions into corpus order."""
    arr = np.sort(np.asarray(positions, dtype=np.float64))
    return np.diff(arr)


def gap_stats(
    positions: Sequence[float] | np.ndarray, batch_tokens: int
) -> tuple[dict[str, float | None] | None, dict[str, float | None] | None]:
    """(gap_tokens, gap_batches) summaries of instance start positions.

    gap_tokens: start-to-start distance of consecutive instances in tokens.
    gap_batches: the same gaps divided by `batch_tokens` (a fractional number
    of batches, so its mean is exactly mean(gap_tokens) / batch_tokens, not a
    difference of integer batch indices). Both are None for fewer than 2
    instances, where no gap exists.
    """
    g = gaps(positions)
    if g.size == 0:
        return None, None
    return summarize(g), summarize(g / batch_tokens)


def log_histogram(values: np.ndarray, bins_per_decade: int = 4) -> dict[str, Any] | None:
    """Histogram over log-spaced bin edges, for plotting gap distributions.

    Zero values (instances at the same position) get their own count,
    `zeros`, because a log axis cannot show them.
    """
    if values.size == 0:
        return None
    positive = values[values > 0]
    zeros = int(values.size - positive.size)
    if positive.size == 0:
        return {"edges": [], "counts": [], "zeros": zeros}
    lo = math.floor(math.log10(positive.min()) * bins_per_decade) / bins_per_decade
    hi = math.ceil(math.log10(positive.max()) * bins_per_decade) / bins_per_decade
    n_bins = max(1, round((hi - lo) * bins_per_decade))
    edges = np.logspace(lo, lo + n_bins / bins_per_decade, n_bins + 1)
    edges[-1] = max(edges[-1], float(positive.max()))
    counts, _ = np.histogram(positive, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "zeros": zeros}


def ratio_estimate(
    numerators: Sequence[float], denominators: Sequence[float]
) -> tuple[float, float]:
    """Ratio sum(num)/sum(den) over a sample and its delta-method standard error.

    Used for bytes per token: a sample of documents gives bytes and tokens per
    document; the standard error treats documents as the sampled units.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.size == 0 or den.sum() <= 0:
        raise ValueError("a ratio needs at least one sample with a positive denominator")
    ratio = float(num.sum() / den.sum())
    n = num.size
    if n < 2:
        return ratio, math.inf
    resid = num - ratio * den
    stderr = math.sqrt(float((resid**2).sum()) / (n * (n - 1))) / float(den.mean())
    return ratio, stderr
