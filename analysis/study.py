"""A study's analysis from its runs: points, fits and recommendations per size.

The input is one `RunPoint` per (arm, size, seed) run, made from a verification report
by `runs_from_verification` (plain dicts in, so a notebook can call it on a report it
downloaded). `analyse` returns the study report's body (DESIGN.md "Studies": `points`,
`fit`, `recommendation`) and is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from analysis import curves, dose, recommend, transfer, trends

KINDS = ("dose_response", "spacing", "repetition", "size_transfer")


@dataclass(frozen=True)
class RunPoint:
    arm: str
    size: str
    seed: int
    dose: float
    """Instances per batch the run saw: placed (measured in its batches) plus natural."""
    retained: bool
    readout: float
    general_loss: float | None = None
    period: int | None = None
    """For a spacing study: the arm's dosing period `k` (a dose every k-th batch)."""
    n_params: int | None = None
    seen_readout: float | None = None
    """The same readout on instances the run's mixture placed (memorisation); None without
    placements."""
    pool_size: int | None = None
    """For a repetition study: the arm's pool of unique instances (None: fresh, or the
    baseline)."""
    copies: float | None = None
    """For a repetition study: placed copies per unique placed instance over the batches
    the run trained on."""
    forgetting: float | None = None
    """The skill's loss rise between exposures (training.evaluate: mean over consecutive
    exposures of the loss just before the next minus just after this one); None when no
    pair was measured (an exposure in every batch)."""


def _copies(arm: Mapping[str, Any], skill_id: str, available: int | None) -> float | None:
    """Placed copies per unique instance in the batches the runs trained on. Exact for a
    synthesized skill, whose supply is fresh first: the first k placements hold
    min(k, available) unique instances (`available`: the pool, or the train split)."""
    placed = arm.get("placed_instances", {}).get(skill_id, 0)
    if not available or not placed:
        return None
    return placed / min(placed, available)


def runs_from_verification(
    report: Mapping[str, Any],
    skill_id: str,
    natural_per_batch: float,
    periods: Mapping[str, int] | None = None,
    pools: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RunPoint]:
    """One point per run of a verification report (training.verify.make_report's shape):
    the arm's placed instances per batch plus the corpus' natural ones, whether the run's
    final held-out readout on the verdict's metric reached the threshold, and the same
    readout on seen (placed) instances. `pools` (a repetition study): per arm
    {"pool_size": int | None, "unique_available": int}, from its mixture's plan."""
    line = report["settings"]["thresholds"][skill_id]
    readout = {"forced_choice": "forced_choice", "exact": "acc"}.get(line["metric"], line["metric"])
    arms = report["arms"]
    out = []
    for run in report["runs"]:
        scores = run["final"].get("skills", {}).get(skill_id, {})
        value = scores.get(f"heldout_{readout}")
        if value is None:
            continue
        placed = arms[run["arm"]]["placed_per_batch"].get(skill_id, 0.0)
        pool = (pools or {}).get(run["arm"])
        seen = scores.get(f"seen_{readout}")
        forgetting = (run.get("forgetting") or {}).get(skill_id, {}).get("forgetting")
        out.append(
            RunPoint(
                arm=run["arm"],
                size=run["size"],
                seed=run["seed"],
                dose=placed + natural_per_batch,
                retained=value >= line["threshold"],
                readout=float(value),
                general_loss=run["final"].get("general_loss"),
                period=None if periods is None else periods.get(run["arm"]),
                n_params=run.get("n_params"),
                seen_readout=None if seen is None else float(seen),
                pool_size=None if pool is None else pool.get("pool_size"),
                copies=None
                if pool is None
                else _copies(arms[run["arm"]], skill_id, pool.get("unique_available")),
                forgetting=None if forgetting is None else float(forgetting),
            )
        )
    return out


def _points(runs: Sequence[RunPoint], by: str) -> list[dict[str, Any]]:
    groups: dict[tuple[str, Any], list[RunPoint]] = {}
    for run in runs:
        groups.setdefault((run.size, getattr(run, by)), []).append(run)
    out = []
    for (size, value), cell in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        k = sum(r.retained for r in cell)
        out.append({
            by: value,
            "size": size,
            "arms": sorted({r.arm for r in cell}),
            "p_retained": k / len(cell),
            "ci95": trends.wilson(k, len(cell)),
            "readout": float(np.mean([r.readout for r in cell])),
            "n_seeds": len(cell),
            "seeds": [{"seed": r.seed, "retained": r.retained, "readout": r.readout}
                      for r in cell],
        })  # fmt: skip
    return out


def _loss_delta(runs: Sequence[RunPoint], baseline: str | None, at: float) -> dict | None:
    """General loss at the arm nearest the recommended dose minus the baseline's, paired
    by seed."""
    if baseline is None:
        return None
    base = {r.seed: r.general_loss for r in runs if r.arm == baseline and r.general_loss}
    dosed = [r for r in runs if r.arm != baseline and r.general_loss is not None]
    if not base or not dosed:
        return None
    nearest = min(dosed, key=lambda r: abs(np.log2(r.dose) - np.log2(at))).arm
    arm = {r.seed: r.general_loss for r in dosed if r.arm == nearest}
    try:
        return {**trends.paired_difference(arm, base), "arm": nearest}  # type: ignore[arg-type]
    except ValueError:
        return None


def dose_response(
    runs: Sequence[RunPoint], *, target_p: float = 0.8, baseline: str | None = None
) -> dict[str, Any]:
    """Per size: points, the Firth fit (ED50, ED_target, slope), the readout curve and the
    recommendation (or why there is none)."""
    fits: dict[str, Any] = {}
    recs: dict[str, Any] = {}
    for size in sorted({r.size for r in runs}):
        cell = [r for r in runs if r.size == size]
        doses, won = [r.dose for r in cell], [int(r.retained) for r in cell]
        try:
            fit = dose.fit(doses, won)
        except ValueError as exc:
            fits[size] = {"undetermined": str(exc)}
            recs[size] = {"undetermined": str(exc)}
            continue
        fits[size] = fit.summary(target_p)
        try:
            fits[size]["readout_curve"] = curves.fit_readout(
                doses, [r.readout for r in cell]
            ).to_dict()
        except ValueError as exc:
            fits[size]["readout_curve"] = {"undetermined": str(exc)}
        first = recommend.recommend(fit, size=size, target_p=target_p)
        delta = _loss_delta(cell, baseline, first["per_batch"]) if "per_batch" in first else None
        recs[size] = recommend.recommend(fit, size=size, target_p=target_p, loss_delta=delta)
    return {"points": _points(runs, "dose"), "fit": fits, "recommendation": recs}


def spacing(runs: Sequence[RunPoint]) -> dict[str, Any]:
    """Per size: P, the readout and forgetting between exposures against log2 of the
    dosing period (SCIENCE.md "Studies" (b))."""
    out: dict[str, Any] = {"points": _points(runs, "period"), "trend": {}}
    for point in out["points"]:
        measured = [r.forgetting for r in runs if r.size == point["size"]
                    and r.period == point["period"] and r.forgetting is not None]  # fmt: skip
        point["forgetting"] = float(np.mean(measured)) if measured else None
        point["n_forgetting"] = len(measured)
    for size in sorted({r.size for r in runs}):
        cell = [r for r in runs if r.size == size and r.period]
        out["trend"][size] = trends.spacing(
            [float(r.period or 0) for r in cell],
            [r.retained for r in cell],
            [r.readout for r in cell],
            [r.forgetting for r in cell],
        )
    return out


def _by_seed(runs: Sequence[RunPoint], value: str) -> dict[int, float]:
    return {r.seed: getattr(r, value) for r in runs if getattr(r, value) is not None}


def repetition(runs: Sequence[RunPoint], *, baseline: str | None = None) -> dict[str, Any]:
    """Per size: a point per pool size (fresh first; with copies per unique instance and
    the mean seen readout), the baseline's runs, and trends.repetition: general loss minus
    the baseline's paired by seed, the seen-minus-held-out gap, and the held-out readout and
    the gap against log2 copies (SCIENCE.md "Studies" (c))."""
    pooled = [r for r in runs if r.arm != baseline]
    points = _points(pooled, "pool_size")
    for point in points:
        cell = [r for r in pooled if r.size == point["size"] and r.pool_size == point["pool_size"]]
        copies = [r.copies for r in cell if r.copies is not None]
        seen = [r.seen_readout for r in cell if r.seen_readout is not None]
        point["copies"] = float(np.mean(copies)) if copies else None
        point["seen_readout"] = float(np.mean(seen)) if seen else None
    out: dict[str, Any] = {
        "points": points,
        "baseline": _points([r for r in runs if r.arm == baseline], "arm"),
        "trend": {},
    }
    for size in sorted({r.size for r in runs}):
        base = _by_seed([r for r in runs if r.arm == baseline and r.size == size], "general_loss")
        rows: list[dict[str, Any]] = []
        for arm in sorted({r.arm for r in pooled if r.size == size}):
            cell = [r for r in pooled if r.arm == arm and r.size == size]
            copies = [r.copies for r in cell if r.copies is not None]
            if not copies:
                continue  # an arm that placed nothing has no copies to trend against
            rows.append({
                "pool_size": cell[0].pool_size,
                "copies": float(np.mean(copies)),
                "loss": _by_seed(cell, "general_loss"),
                "baseline_loss": base,
                "seen": _by_seed(cell, "seen_readout"),
                "heldout": _by_seed(cell, "readout"),
            })  # fmt: skip
        rows.sort(key=lambda row: row["copies"])
        out["trend"][size] = trends.repetition(rows)
    return out


def size_transfer(runs: Sequence[RunPoint], *, target_p: float = 0.8) -> dict[str, Any]:
    """A dose-response per size, then log ED50 against log parameters across sizes."""
    body = dose_response(runs, target_p=target_p)
    points = []
    for size, fit in body["fit"].items():
        params = next((r.n_params for r in runs if r.size == size and r.n_params), None)
        if "ed50" in fit and params:
            ed = fit["ed50"]
            points.append(transfer.SizePoint(size, params, dose.Estimate(ed["value"], *ed["ci95"])))
    body["transfer"] = transfer.size_transfer(points)
    return body


def analyse(kind: str, runs: Sequence[RunPoint], **options: Any) -> dict[str, Any]:
    """The study report's body for `kind` (KINDS)."""
    if kind == "dose_response":
        body = dose_response(runs, **options)
    elif kind == "spacing":
        body = spacing(runs)
    elif kind == "repetition":
        body = repetition(runs, baseline=options.get("baseline"))
    elif kind == "size_transfer":
        body = size_transfer(runs, target_p=options.get("target_p", 0.8))
    else:
        raise ValueError(f"unknown study kind {kind!r}; kinds: {', '.join(KINDS)}")
    body["runs"] = [asdict(r) for r in runs]
    return body
