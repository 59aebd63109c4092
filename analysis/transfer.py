"""Across sizes: log ED50 against log parameters (the threshold shrinks with size).

A weighted least-squares line through each size's log ED50, weighted by the inverse
variance read from its profile interval (log(high / low) / (2 x 1.96) as a standard
error). It predicts ED50 for a size not trained, with a 95% prediction interval, and is
checked by leaving the largest size out and predicting it. A prediction more than
`EXTRAPOLATION` times beyond the trained parameter counts is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis.dose import Estimate

EXTRAPOLATION = 10.0
Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class SizePoint:
    size: str
    parameters: int
    ed50: Estimate


@dataclass(frozen=True)
class Line:
    intercept: float
    slope: float
    cov: np.ndarray
    residual_var: float
    dof: int
    x_range: tuple[float, float]

    def predict(self, parameters: int) -> dict[str, Any]:
        x0 = math.log(parameters)
        y0 = self.intercept + self.slope * x0
        v = np.array([1.0, x0])
        var = float(v @ self.cov @ v) + self.residual_var
        t = float(stats.t.ppf(0.975, self.dof)) if self.dof > 0 else math.inf
        half = t * math.sqrt(var)
        low, high = self.x_range
        factor = max(math.exp(low - x0), math.exp(x0 - high), 1.0)
        return {
            "parameters": parameters,
            "ed50": math.exp(y0),
            "prediction_ci95": [math.exp(y0 - half), math.exp(y0 + half)]
            if math.isfinite(half)
            else [None, None],
            "extrapolation_factor": factor,
            "extrapolates": factor > EXTRAPOLATION,
        }


def _se(estimate: Estimate) -> float:
    assert estimate.low is not None and estimate.high is not None
    return max(math.log(estimate.high / estimate.low) / (2 * Z95), 1e-6)


def fit_line(points: Sequence[SizePoint]) -> Line:
    """Weighted least squares of log ED50 on log parameters over sizes whose ED50 interval
    is bounded. ValueError with fewer than two such sizes."""
    usable = [p for p in points if p.ed50.bounded and p.ed50.value > 0]
    if len({p.parameters for p in usable}) < 2:
        raise ValueError("size transfer needs a bounded ED50 at two or more model sizes")
    x = np.log([p.parameters for p in usable])
    y = np.log([p.ed50.value for p in usable])
    w = 1.0 / np.array([_se(p.ed50) for p in usable]) ** 2
    design = np.column_stack([np.ones_like(x), x])
    info = design.T @ (design * w[:, None])
    beta = np.linalg.solve(info, design.T @ (w * y))
    dof = x.size - 2
    residual = y - design @ beta
    # Scale by the residual variance where there are degrees of freedom left (as weighted
    # least squares does); with two sizes the line is exact and the weights alone speak.
    scale = float(np.sum(w * residual**2) / dof) if dof > 0 else 1.0
    cov = np.linalg.inv(info) * scale
    mean_var = float(np.mean(1.0 / w)) * scale
    span = (float(x.min()), float(x.max()))
    return Line(float(beta[0]), float(beta[1]), cov, mean_var, dof, span)


def size_transfer(points: Sequence[SizePoint], predict: Sequence[int] = ()) -> dict[str, Any]:
    """The line, predictions for `predict` parameter counts, and the leave-largest-out
    check (the largest size predicted from the others: inside its prediction interval?)."""
    try:
        line = fit_line(points)
    except ValueError as exc:
        return {"undetermined": str(exc)}
    out: dict[str, Any] = {
        "slope": line.slope,
        "slope_ci95": [
            line.slope - Z95 * math.sqrt(line.cov[1, 1]),
            line.slope + Z95 * math.sqrt(line.cov[1, 1]),
        ],
        "sizes": [p.size for p in points if p.ed50.bounded],
        "predictions": [line.predict(n) for n in predict],
        "method": "weighted least squares of log ED50 on log parameters",
    }
    usable = sorted((p for p in points if p.ed50.bounded), key=lambda p: p.parameters)
    if len(usable) >= 3:
        largest = usable[-1]
        held = fit_line(usable[:-1]).predict(largest.parameters)
        low, high = held["prediction_ci95"]
        out["leave_largest_out"] = {
            "size": largest.size,
            "measured": largest.ed50.value,
            **held,
            "inside": low is not None and low <= largest.ed50.value <= high,
        }
    else:
        out["leave_largest_out"] = {"undetermined": "needs bounded ED50s at three or more sizes"}
    return out
