"""The continuous readout against dose: a four-parameter log-logistic curve.

    readout(dose) = floor + (ceiling - floor) * expit(steepness * (log2 dose - log2 midpoint))

Beside the logistic model of P(retained) (analysis.dose) it tells a jump from a gradual
shift: if P(retained) rises over one doubling while the readout climbs over many, seeds
cross the threshold one by one on a slow drift; if both rise together, the skill switches
on. `rise_doublings` is the width of the readout's rise from 10% to 90% of its range.

Fitted by nonlinear least squares (scipy.optimize.curve_fit); intervals are Wald intervals
from its covariance, t-distributed on the residual degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

RISE = 2.0 * math.log(9.0)
"""logit(0.9) - logit(0.1): a log-logistic's 10%-90% rise spans RISE / steepness."""


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def log_logistic(
    log_dose: np.ndarray, floor: float, ceiling: float, steepness: float, log_midpoint: float
) -> np.ndarray:
    return floor + (ceiling - floor) * special.expit(steepness * (log_dose - log_midpoint))


@dataclass(frozen=True)
class ReadoutCurve:
    floor: float
    ceiling: float
    steepness: float
    midpoint: float
    ci95: dict[str, list[float | None]]
    residual_sd: float
    n: int

    @property
    def rise_doublings(self) -> float:
        return RISE / abs(self.steepness) if self.steepness else math.inf

    def at(self, dose: float | np.ndarray) -> np.ndarray:
        return log_logistic(
            np.log2(dose), self.floor, self.ceiling, self.steepness, math.log2(self.midpoint)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "floor": self.floor,
            "ceiling": self.ceiling,
            "steepness": self.steepness,
            "midpoint": self.midpoint,
            "rise_doublings": self.rise_doublings,
            "ci95": self.ci95,
            "residual_sd": self.residual_sd,
            "n": self.n,
            "method": "four-parameter log-logistic, least squares (curve_fit), Wald t intervals",
        }


def fit_readout(doses: Sequence[float], readouts: Sequence[float]) -> ReadoutCurve:
    """Fit the curve to one readout per run (doses > 0). ValueError with fewer than three
    distinct doses or five runs (four parameters need them), or when the fit fails."""
    dose = np.asarray(doses, dtype=float)
    y = np.asarray(readouts, dtype=float)
    keep = dose > 0
    x, y = np.log2(dose[keep]), y[keep]
    if np.unique(x).size < 3 or x.size < 5:
        raise ValueError("a readout curve needs runs at three or more positive doses (five runs)")
    lo, hi = float(y.min()), float(y.max())
    span = max(hi - lo, 1e-6)
    start = [lo, hi, 2.0, float(np.median(x))]
    bounds = (
        [lo - span, lo, 0.0, float(x.min()) - 4.0],
        [hi, hi + span, 50.0, float(x.max()) + 4.0],
    )
    try:
        params, cov = optimize.curve_fit(log_logistic, x, y, p0=start, bounds=bounds, maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"the readout curve did not fit: {exc}") from exc
    dof = max(x.size - 4, 1)
    residual = y - log_logistic(x, *params)
    t = float(stats.t.ppf(0.975, dof))
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    names = ("floor", "ceiling", "steepness", "log2_midpoint")
    # A jump (steep rise between two doses) leaves the steepness and so the covariance
    # undetermined: such bounds are None, not a huge number that looks measured.
    ci: dict[str, list[float | None]] = {
        n: [_finite(v - t * s), _finite(v + t * s)]
        for n, v, s in zip(names, params, se, strict=True)
    }
    ci["midpoint"] = [None if b is None or abs(b) > 1000 else 2.0**b for b in ci["log2_midpoint"]]
    return ReadoutCurve(
        floor=float(params[0]),
        ceiling=float(params[1]),
        steepness=float(params[2]),
        midpoint=float(2.0 ** params[3]),
        ci95=ci,
        residual_sd=float(np.sqrt(np.sum(residual**2) / dof)),
        n=int(x.size),
    )
