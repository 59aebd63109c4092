"""Did an arm make a model size keep a skill? P(retained) across seeds, with intervals.

Pure functions, no torch. The rules, stated once (SCIENCE.md section 4):

- A seed is retained when its final held-out exact-match accuracy >= threshold.
  Default threshold: chance + margin * (1 - chance), margin 0.5: halfway from
  chance to perfect. Chance per family: `chance_level`.
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
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054
DECIDE_AT = 0.5
BOOTSTRAP_SAMPLES = 2000


def chance_level(family: str | None, params: dict[str, Any]) -> float:
    """Exact-match accuracy of guessing the answer uniformly among its labels.

    number_comparison: "<" or ">" (the rare "=" ignored) -> 1/2; token_pair with rule
    order -> 1/2, with mod_add -> 1/k; modular_addition -> 1/modulus; families with
    open-ended answers (copying, multi_digit_addition, examples, no generator) -> 0.
    """
    if family == "number_comparison":
        return 0.5
    if family == "token_pair":
        return 0.5 if params.get("rule", "order") == "order" else 1.0 / params.get("k", 100)
    if family == "modular_addition":
        return 1.0 / params.get("modulus", 97)
    return 0.0


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
) -> dict[str, Any]:
    """The verdict of one skill x size x arm from its seeds' final held-out accuracies.

    `baseline`: the baseline arm's accuracies on the same seeds (None for the baseline).
    `threshold_note`: where the threshold came from, quoted in the rule.
    """
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
    rule = (
        f"a seed is retained when its final held-out exact-match accuracy >= {threshold:.3g}"
        f"{origin}; {k}/{n} seeds retained, P = {k / n:.3f}, Wilson 95% interval "
        f"[{ci[0]:.3f}, {ci[1]:.3f}]; {outcome} because the {bound} (retained if the lower "
        f"bound >= {DECIDE_AT}, not_retained if the upper bound < {DECIDE_AT}, else inconclusive)"
    )
    return {
        "skill_id": skill_id,
        "size": size,
        "arm": arm,
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
