"""Spacing and repetition: trends across a study's points, and paired differences.

- Spacing (a fixed dose given every n batches, n/k fixed): P(retained) against log2 n by
  the same Firth logistic model as a dose-response (its slope per doubling of the period,
  profile interval), and the final readout against log2 n by least squares (t interval on
  the slope). Forgetting between doses is read from the exposure-aligned sawtooth.
- Repetition (a fixed dose drawn from a pool of unique instances): general loss against
  the baseline paired by seed (the same seed trains both), and the held-out readout and
  the seen-minus-held-out readout gap against log2 copies per unique instance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from analysis import dose as dose_model


def wilson(successes: int, n: int) -> list[float]:
    """95% Wilson score interval of a proportion (scipy's), [0, 1] when n = 0."""
    if n == 0:
        return [0.0, 1.0]
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def linear_trend(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Least-squares slope of y on x with its 95% t interval (scipy.stats.linregress)."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if np.unique(xs).size < 2 or xs.size < 3:
        raise ValueError("a trend needs three or more points at two or more distinct x")
    fit = stats.linregress(xs, ys)
    t = float(stats.t.ppf(0.975, xs.size - 2))
    return {
        "slope": float(fit.slope),
        "ci95": [float(fit.slope - t * fit.stderr), float(fit.slope + t * fit.stderr)],
        "intercept": float(fit.intercept),
        "n": int(xs.size),
    }


def paired_difference(arm: Mapping[int, float], baseline: Mapping[int, float]) -> dict[str, Any]:
    """mean(arm[seed] - baseline[seed]) over the seeds both have, with a 95% t interval."""
    seeds = sorted(set(arm) & set(baseline))
    diffs = np.array([arm[s] - baseline[s] for s in seeds], float)
    if diffs.size < 2:
        raise ValueError("a paired difference needs two or more seeds in both arms")
    mean, se = float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(diffs.size))
    t = float(stats.t.ppf(0.975, diffs.size - 1))
    return {"mean": mean, "ci95": [mean - t * se, mean + t * se], "n_pairs": int(diffs.size)}


def spacing(
    periods: Sequence[float],
    retained: Sequence[bool | int],
    readouts: Sequence[float],
    forgetting: Sequence[float | None] | None = None,
) -> dict[str, Any]:
    """P, readout and (given) forgetting between exposures against log2(period) over runs
    of a spacing study (one entry a run; a run without a forgetting measurement is left
    out of that trend only)."""
    n = np.asarray(periods, float)
    won = np.asarray(retained, int)
    points = []
    for value in sorted(set(n.tolist())):
        at = n == value
        k, m = int(won[at].sum()), int(at.sum())
        points.append(
            {
                "period": value,
                "p_retained": k / m,
                "ci95": wilson(k, m),
                "readout": float(np.mean(np.asarray(readouts, float)[at])),
                "n_seeds": m,
            }
        )
    out: dict[str, Any] = {"points": points}
    try:
        fit = dose_model.fit(n.tolist(), won.tolist())
        out["p_trend"] = {**fit.slope_estimate().to_dict(), "per": "doubling of the period"}
    except ValueError as exc:
        out["p_trend"] = {"undetermined": str(exc)}
    try:
        out["readout_trend"] = {
            **linear_trend(np.log2(n).tolist(), readouts),
            "per": "doubling of the period",
        }
    except ValueError as exc:
        out["readout_trend"] = {"undetermined": str(exc)}
    if forgetting is not None:
        measured = [(math.log2(p), f) for p, f in zip(n.tolist(), forgetting, strict=True)
                    if f is not None]  # fmt: skip
        try:
            out["forgetting_trend"] = {
                **linear_trend([x for x, _ in measured], [f for _, f in measured]),
                "per": "doubling of the period",
            }
        except ValueError as exc:
            out["forgetting_trend"] = {"undetermined": str(exc)}
    return out


def sawtooth(
    steps: Sequence[int], readouts: Sequence[float], exposures: Sequence[int]
) -> dict[str, Any]:
    """Forgetting between doses from evaluations aligned to the exposures.

    For each evaluation after an exposure and before the next: the time since the last
    exposure and the readout. `drop_per_exposure`: the mean of (first reading after an
    exposure) minus (last reading before the next one), over the periods that hold both.
    `half_life_steps`: log 2 over the decay rate of a line fitted to log(readout / first
    reading after the exposure) against steps since it (None when the readout does not
    fall)."""
    marks = np.asarray(sorted(exposures), int)
    if marks.size == 0:
        return {"drop_per_exposure": None, "half_life_steps": None, "periods": 0}
    step = np.asarray(steps, int)
    value = np.asarray(readouts, float)
    drops, since, ratio = [], [], []
    for i, start in enumerate(marks):
        end = marks[i + 1] if i + 1 < marks.size else None
        inside = (step > start) & ((step <= end) if end is not None else True)
        if inside.sum() < 2:
            continue
        seg_steps, seg = step[inside], value[inside]
        drops.append(float(seg[0] - seg[-1]))
        if seg[0] > 0:
            since.extend((seg_steps - seg_steps[0]).tolist())
            ratio.extend(np.log(np.clip(seg / seg[0], 1e-9, None)).tolist())
    half_life = None
    if len(set(since)) >= 2:
        slope = float(stats.linregress(since, ratio).slope)
        half_life = math.log(2.0) / -slope if slope < 0 else None
    return {
        "drop_per_exposure": float(np.mean(drops)) if drops else None,
        "half_life_steps": half_life,
        "periods": len(drops),
    }


def repetition(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Repetition study points, each {"pool_size": int | None (fresh), "copies": float
    (copies per unique instance), "loss": {seed: general loss}, "baseline_loss": {seed:
    loss}, "seen": {seed: readout on pool instances}, "heldout": {seed: readout on
    held-out probes}}: per point the loss difference to the baseline paired by seed (and
    whether it lies within 2 SD of the baseline seeds' losses: SCIENCE.md's honest null)
    and the seen-minus-held-out gap; across points the held-out readout's and the gap's
    trends against log2 copies."""
    rows, xs, gaps, held_x, held_y = [], [], [], [], []
    for point in points:
        row: dict[str, Any] = {"pool_size": point.get("pool_size"), "copies": point["copies"]}
        x = math.log2(max(point["copies"], 1e-9))
        base = point.get("baseline_loss") or {}
        try:
            row["loss_vs_baseline"] = paired_difference(point.get("loss") or {}, base)
            sd = float(np.std(list(base.values()), ddof=1))
            row["loss_vs_baseline"] |= {
                "baseline_sd": sd,
                "within_2sd": abs(row["loss_vs_baseline"]["mean"]) <= 2 * sd,
            }
        except ValueError as exc:
            row["loss_vs_baseline"] = {"undetermined": str(exc)}
        seen, held = point.get("seen") or {}, point.get("heldout") or {}
        for s in sorted(held):
            held_x.append(x)
            held_y.append(held[s])
        if len(set(seen) & set(held)) >= 2:
            row["seen_minus_heldout"] = paired_difference(seen, held)
            for s in sorted(set(seen) & set(held)):
                xs.append(x)
                gaps.append(seen[s] - held[s])
        rows.append(row)
    out: dict[str, Any] = {"points": rows}
    per = "doubling of copies per instance"
    for name, x_values, y_values in (("heldout_trend", held_x, held_y), ("gap_trend", xs, gaps)):
        try:
            out[name] = {**linear_trend(x_values, y_values), "per": per}
        except ValueError as exc:
            out[name] = {"undetermined": str(exc)}
    return out
