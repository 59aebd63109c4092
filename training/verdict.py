"""Did an arm make a model size keep a skill? P(retained) across seeds, with intervals.

Pure functions, no torch. The rules, stated once (SCIENCE.md section 4):

- The verdict reads one metric (`METRICS`): `forced_choice` (the label with the highest
  log-probability is the answer; training.evaluate) by default for a family with a
  label set, else `exact` (exact match of the answer and its end).
- A seed is retained when its final held-out value of the metric >= threshold.
  Default threshold: chance + margin * (1 - chance), margin 0.5: halfway from
  chance to perfect. Chance is that metric's floor on the probe set: `chance_level`.
- P(retained) = retained seeds / seeds, with a 95% Wilson score interval.
- Verdict: `retained` if the interval's lower bound >= 0.5 (a retaining run is
  more likely than not, with 95% confidence), `not_retained` if its upper bound
  < 0.5, else `inconclusive` (more seeds would decide it). With 5 seeds only 5/5
  is `retained` and only 0/5 `not_retained`.
- Effect vs baseline: difference in P with Newcombe's hybrid score interval
  (method 10, from the two Wilson intervals), and difference in mean accuracy
  with a percentile bootstrap over seeds (each arm resampled on its own).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

Z95 = 1.959963984540054
DECIDE_AT = 0.5
BOOTSTRAP_SAMPLES = 2000


METRICS = {
    "forced_choice": "forced-choice accuracy over the family's labels",
    "exact": "exact match of the answer and its end",
}
"""The metrics a verdict can read, and how the rule names them."""
METRIC_KEYS = {"forced_choice": "forced_choice", "exact": "acc"}
"""Metric -> the readout's name in a run's evaluation (`heldout_<name>`)."""
STRATUM_P = 0.05
"""A stratum's readout is "indistinguishable from chance" when a one-sided binomial test
against its chance level has p >= STRATUM_P."""


def chance_level(answers: Sequence[str]) -> float:
    """The floor of both metrics on a probe set with these answers: the share of its most
    common answer.

    That is what the best prompt-blind model scores: one that always gives the most
    common answer (and its end) scores it in exact match and in forced choice, and no
    model that ignores the prompt does better. Guessing uniformly among k labels scores
    1/k in forced choice, never more than the most common share, so the floor is this
    share: 1/k for a balanced label set (token_pair order 1/2, modular_addition about
    1/modulus), 0.494 for two-digit comparison (`<` and `>` each 4,005 of 8,100 pairs,
    `=` 90), near 0 for open answers (sums, copies). Exact match over the whole
    vocabulary has the same floor: a model that never emits a label scores 0, below it.
    """
    if not answers:
        return 0.0
    return max(Counter(answers).values()) / len(answers)


def default_threshold(chance: float, margin: float = 0.5) -> tuple[float, str]:
    """chance + margin * (1 - chance), and that rule in words for the report."""
    return chance + margin * (1.0 - chance), f"chance {chance:.3g} + {margin} x (1 - chance)"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score 95% interval (method 10)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1)
    l2, u2 = wilson_interval(k2, n2)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, lo), min(1.0, hi)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def bootstrap_mean_interval(xs: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the mean, resampling seeds with replacement."""
    rng = random.Random(seed)
    means = sorted(_mean(rng.choices(xs, k=len(xs))) for _ in range(BOOTSTRAP_SAMPLES))
    return means[int(0.025 * BOOTSTRAP_SAMPLES)], means[int(0.975 * BOOTSTRAP_SAMPLES) - 1]


def bootstrap_difference_interval(
    xs: Sequence[float], ys: Sequence[float], seed: int = 0
) -> tuple[float, float]:
    """Percentile 95% interval of mean(xs) - mean(ys), each resampled on its own."""
    rng = random.Random(seed)
    diffs = sorted(
        _mean(rng.choices(xs, k=len(xs))) - _mean(rng.choices(ys, k=len(ys)))
        for _ in range(BOOTSTRAP_SAMPLES)
    )
    return diffs[int(0.025 * BOOTSTRAP_SAMPLES)], diffs[int(0.975 * BOOTSTRAP_SAMPLES) - 1]


def decide(ci: tuple[float, float]) -> str:
    if ci[0] >= DECIDE_AT:
        return "retained"
    if ci[1] < DECIDE_AT:
        return "not_retained"
    return "inconclusive"


def verdict(
    skill_id: str,
    size: str,
    arm: str,
    accuracies: Sequence[float],
    threshold: float,
    baseline: Sequence[float] | None = None,
    chance: float | None = None,
    threshold_note: str = "",
    metric: str = "exact",
) -> dict[str, Any]:
    """The verdict of one skill x size x arm from its seeds' final held-out `metric`
    (`accuracies`: one value per seed, whichever metric it is).

    `baseline`: the baseline arm's values on the same seeds (None for the baseline).
    `threshold_note`: where the threshold came from, quoted in the rule.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    if not accuracies:
        raise ValueError(f"{skill_id}/{size}/{arm}: no seeds to judge")
    n, k = len(accuracies), sum(a >= threshold for a in accuracies)
    ci = wilson_interval(k, n)
    outcome = decide(ci)
    mean = _mean(accuracies)
    effect = None
    if baseline:
        kb = sum(a >= threshold for a in baseline)
        d, lo, hi = newcombe_difference(k, n, kb, len(baseline))
        dm = mean - _mean(baseline)
        effect = {
            "p_retained_diff": d,
            "p_retained_diff_ci95": [lo, hi],
            "p_retained_diff_method": "Newcombe hybrid score (method 10)",
            "mean_accuracy_diff": dm,
            "mean_accuracy_diff_ci95": list(bootstrap_difference_interval(accuracies, baseline)),
            "mean_accuracy_diff_method": f"percentile bootstrap over seeds, {BOOTSTRAP_SAMPLES}",
        }
    bound = f"lower bound {ci[0]:.3f} >= {DECIDE_AT}" if outcome == "retained" else (
        f"upper bound {ci[1]:.3f} < {DECIDE_AT}" if outcome == "not_retained"
        else f"interval [{ci[0]:.3f}, {ci[1]:.3f}] contains {DECIDE_AT}"
    )  # fmt: skip
    origin = f" ({threshold_note})" if threshold_note else ""
    floor = "" if chance is None else f"; chance {chance:.3g}"
    rule = (
        f"metric: {metric} ({METRICS[metric]}){floor}; a seed is retained when its final "
        f"held-out {metric} >= {threshold:.3g}"
        f"{origin}; {k}/{n} seeds retained, P = {k / n:.3f}, Wilson 95% interval "
        f"[{ci[0]:.3f}, {ci[1]:.3f}]; {outcome} because the {bound} (retained if the lower "
        f"bound >= {DECIDE_AT}, not_retained if the upper bound < {DECIDE_AT}, else inconclusive)"
    )
    return {
        "skill_id": skill_id,
        "size": size,
        "arm": arm,
        "metric": metric,
        "p_retained": k / n,
        "ci95": [ci[0], ci[1]],
        "threshold": threshold,
        "verdict": outcome,
        "n_seeds": n,
        "n_retained": k,
        "accuracies": list(accuracies),
        "mean_accuracy": mean,
        "mean_accuracy_ci95": list(bootstrap_mean_interval(accuracies)),
        "chance": chance,
        "effect_vs_baseline": effect,
        "rule": rule,
    }


def binomial_p_greater(successes: int, n: int, p: float) -> float:
    """One-sided exact binomial p-value P(X >= successes) for X ~ Binomial(n, p).

    Written here because scipy is not a dependency; tested against known values."""
    if successes <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p
        + (n - i) * log_q
        for i in range(successes, n + 1)
    ]  # fmt: skip
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def summary(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Mean of a readout across seeds with its percentile bootstrap 95% interval (seeds
    without the readout left out); None when no seed has it."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {"mean": _mean(got), "ci95": list(bootstrap_mean_interval(got)), "n_seeds": len(got)}


def stratum_threshold(threshold: float, chance: float, stratum_chance: float) -> float:
    """The threshold moved to a stratum's own chance level, keeping its margin: a
    threshold that is halfway from chance to perfect stays halfway on the stratum."""
    margin = (threshold - chance) / (1.0 - chance) if chance < 1.0 else 0.0
    return stratum_chance + margin * (1.0 - stratum_chance)


def stratum_check(
    name: str,
    seeds: Sequence[int],
    whole: Sequence[float],
    values: Sequence[float | None],
    sizes: Sequence[int],
    threshold: float,
    chance: float,
    stratum_chance: float,
) -> dict[str, Any]:
    """A hard stratum's readouts across seeds, and the seeds that pass on the whole probe
    set while this stratum stays below its own threshold (`stratum_threshold`): such a
    seed may have passed on a heuristic, not the rule. The verdict itself still uses the
    whole probe set; this is a warning.

    `whole`, `values`: each seed's metric on the whole probe set and on the stratum;
    `sizes`: the stratum's instances in each seed's probe sample.
    """
    limit = stratum_threshold(threshold, chance, stratum_chance)
    p_values: list[float | None] = []
    flagged = []
    for seed, total, value, n in zip(seeds, whole, values, sizes, strict=True):
        if value is None or n == 0:
            p_values.append(None)
            continue
        successes = min(n, max(0, round(value * n)))  # tie credits rounded to a count
        p_values.append(binomial_p_greater(successes, n, stratum_chance))
        if total >= threshold and value < limit:
            flagged.append(seed)
    out: dict[str, Any] = {
        "stratum": name,
        "chance": stratum_chance,
        "threshold": limit,
        "values": list(values),
        "n": list(sizes),
        "p_vs_chance": p_values,
        "summary": summary(values),
        "flagged_seeds": flagged,
        "warning": None,
    }
    if flagged:
        shown = ", ".join(
            f"seed {seed}: {value:.3f}"
            for seed, value in zip(seeds, values, strict=True)
            if seed in flagged and value is not None
        )
        out["warning"] = (
            f"stratum {name!r} is at or near chance ({stratum_chance:.3g}) while the whole "
            f"probe set passes: below its own threshold {limit:.3g} on {len(flagged)} of the "
            f"retained seeds ({shown}); those seeds may have passed on a heuristic, not the "
            "rule (the verdict uses the whole probe set)"
        )
    return out


# -- sequential looks ------------------------------------------------------------------

DEFAULT_MIN_SEEDS = 10
"""Seeds of the first look: the demo's claims rest on at least this many (issue 15)."""
DEFAULT_MAX_SEEDS = 40
"""Seeds of the last look: a verification stops here, decided or not."""


def seed_looks(min_seeds: int = DEFAULT_MIN_SEEDS, max_seeds: int = DEFAULT_MAX_SEEDS) -> list[int]:
    """The looks, fixed before any seed trains: `min_seeds`, then doubling, the last one
    `max_seeds` (10, 20, 40 by default; 5, 10, 20, 40 from 5; 10, 20, 30 up to 30)."""
    if not 1 <= min_seeds <= max_seeds:
        raise ValueError(f"need 1 <= min_seeds <= max_seeds, got {min_seeds} and {max_seeds}")
    looks = [min_seeds]
    while looks[-1] < max_seeds:
        looks.append(min(2 * looks[-1], max_seeds))
    return looks


def looks_z(n_looks: int, alpha: float = 0.05) -> float:
    """The z of a two-sided Wilson interval at alpha / n_looks (Bonferroni over the looks):
    deciding at any of the looks then errs with probability at most alpha."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1.0 - alpha / (2 * max(1, n_looks)))


def next_look(
    cells: Mapping[Any, tuple[int, int]], looks: Sequence[int], z: float | None = None
) -> int | None:
    """How many seeds the next look needs, or None when every cell is decided or the last
    look is done. Pure: it reads counts, not runs, so any executor can call it.

    `cells`: each verdict cell's (retained seeds, seeds judged so far), e.g. keyed by
    (skill, size, arm); a cell is decided when its Wilson interval at `z` (default
    looks_z(len(looks)): Bonferroni over the looks fixed in advance) lies on one side of
    DECIDE_AT. The seeds so far are the fewest any cell has: a look is complete when every
    cell has its seeds. Before the first look it returns looks[0]."""
    if not looks or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks must be increasing seed counts, got {list(looks)}")
    z = looks_z(len(looks)) if z is None else z
    done = min((n for _, n in cells.values()), default=0)
    later = [look for look in looks if look > done]
    if done < looks[0]:
        return looks[0]
    if not later:
        return None
    if cells and all(decide(wilson_interval(k, n, z)) != "inconclusive" for k, n in cells.values()):
        return None
    return later[0]


# -- what a verdict adds to P(retained) ------------------------------------------------

SENSITIVITY_OFFSETS = (-0.1, -0.05, 0.0, 0.05, 0.1)
"""Threshold moves (in the metric's units) of the sensitivity table."""


def given_outcome(values: Sequence[float], threshold: float) -> dict[str, Any]:
    """Mean readout of the retained seeds and of the others (bimodality: two separate
    groups, or one spread around the threshold), with their counts."""
    hit = [v for v in values if v >= threshold]
    miss = [v for v in values if v < threshold]
    return {
        "given_success": _mean(hit) if hit else None,
        "given_failure": _mean(miss) if miss else None,
        "n_success": len(hit),
        "n_failure": len(miss),
    }


def paired_effect(
    values: Mapping[int, float], baseline: Mapping[int, float], seed: int = 0
) -> dict[str, Any] | None:
    """The arm's readout minus the baseline's, seed by seed (the seeds both arms have): mean
    difference with a percentile bootstrap 95% interval over seeds; None without a seed in
    common. Pairing removes what a seed does to both arms (its data draw, its weights)."""
    common = sorted(set(values) & set(baseline))
    if not common:
        return None
    diffs = [values[s] - baseline[s] for s in common]
    return {
        "seeds": common,
        "diffs": diffs,
        "mean_diff": _mean(diffs),
        "mean_diff_ci95": list(bootstrap_mean_interval(diffs, seed)),
        "method": f"paired by seed, percentile bootstrap over seeds, {BOOTSTRAP_SAMPLES}",
    }


def threshold_sensitivity(
    values: Sequence[float], threshold: float, offsets: Sequence[float] = SENSITIVITY_OFFSETS
) -> list[dict[str, Any]]:
    """P(retained) and the verdict at thresholds moved by `offsets` (kept inside [0, 1])."""
    rows = []
    for offset in offsets:
        t = min(1.0, max(0.0, threshold + offset))
        k, n = sum(v >= t for v in values), len(values)
        ci = wilson_interval(k, n)
        rows.append(
            {"threshold": t, "offset": offset, "n_retained": k, "p_retained": k / n if n else None,
             "ci95": [ci[0], ci[1]], "verdict": decide(ci)}
        )  # fmt: skip
    return rows
