"""P(retained) against dose: a logistic model of one Bernoulli per seed on log2(dose).

    logit P(retained | dose) = intercept + slope * log2(dose)

`slope` is per doubling of the dose. The dose is what the runs saw, placed plus natural
instances per batch (a natural-frequency arm sits at its natural rate; a run with no
instance at all has no log dose and is left out of the fit, counted in `excluded`).

Fitted by Firth's penalised likelihood (log-likelihood + 0.5 log det of the Fisher
information): unlike maximum likelihood it gives finite estimates under complete
separation (every low dose failed, every high dose retained), which small studies hit
often. Intervals are profile penalised-likelihood intervals (analysis.profile), as R's
logistf gives: for ED_p the model is re-parameterised as
logit P = logit(p) + slope * (log2 dose - log2 ED_p) and log2 ED_p is profiled. A side
the data do not bound is open (None), rather than a number that looks decided.
Coverage is checked by simulation in tests/analysis/test_dose.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special

from analysis import profile

SEARCH_DOUBLINGS = 4.0
"""How far outside the tested doses (in doublings) an interval is searched before it is
called open: a bound further out would be an extrapolation the design cannot support."""


def _grouped(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs at the same dose, pooled: (log dose, successes, runs). The likelihood, its
    Firth penalty and the score are the same as over single runs, and far cheaper."""
    levels, index = np.unique(x, return_inverse=True)
    return levels, np.bincount(index, weights=y), np.bincount(index).astype(float)


def _penalised_loglik(
    beta: np.ndarray, x: np.ndarray, y: np.ndarray, m: np.ndarray | None = None
) -> float:
    """Binomial log-likelihood of y successes in m runs at each x (m = 1: single runs)
    plus Firth's 0.5 log det of the Fisher information."""
    m = np.ones_like(x) if m is None else m
    eta = beta[0] + beta[1] * x
    loglik = float(np.sum(y * eta - m * np.logaddexp(0.0, eta)))
    w = m * special.expit(eta) * special.expit(-eta)
    sw, swx, swxx = w.sum(), (w * x).sum(), (w * x * x).sum()
    det = sw * swxx - swx * swx
    if det <= 0.0:  # numerically singular: far in a flat tail, not a maximum
        return -math.inf
    return loglik + 0.5 * math.log(det)


def _penalised_score(
    beta: np.ndarray, x: np.ndarray, y: np.ndarray, m: np.ndarray | None = None
) -> np.ndarray:
    """Firth's modified score X'(y - m p + h (1/2 - p)), h the hat matrix's diagonal."""
    m = np.ones_like(x) if m is None else m
    eta = beta[0] + beta[1] * x
    p = special.expit(eta)
    w = m * p * (1.0 - p)
    info = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    design = np.column_stack([np.ones_like(x), x])
    h = w * np.einsum("ij,jk,ik->i", design, np.linalg.inv(info), design)
    return design.T @ (y - m * p + h * (0.5 - p))


def _maximise(
    x: np.ndarray, y: np.ndarray, m: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, float]:
    result = optimize.minimize(
        lambda b: -_penalised_loglik(b, x, y, m),
        start,
        jac=lambda b: -_penalised_score(b, x, y, m),
        method="BFGS",
        options={"gtol": 1e-9, "maxiter": 1000},
    )
    return result.x, -float(result.fun)


def _profile_max(fixed: Any, start: float) -> float:
    """max over one free parameter of a penalised log-likelihood of it (Brent's method,
    bracketed from `start`: the function is unimodal in that parameter)."""
    result = optimize.minimize_scalar(lambda v: -fixed(float(v)), bracket=(start - 1.0, start))
    return -float(result.fun)


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval; a side is None where the data do not bound it."""

    value: float
    low: float | None
    high: float | None

    @property
    def ci95(self) -> list[float | None]:
        return [self.low, self.high]

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None

    def ratio(self) -> float | None:
        """high / low: an ED interval's width as a factor (None when open)."""
        if not self.bounded or not self.low:
            return None
        assert self.high is not None
        return self.high / self.low

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci95": self.ci95}


@dataclass(frozen=True)
class DoseResponse:
    """A fitted dose-response of retained on log2(dose) (see the module's docstring)."""

    intercept: float
    slope: float
    log_dose: np.ndarray = field(repr=False)
    retained: np.ndarray = field(repr=False)
    penalised_loglik: float
    excluded: int = 0
    method: str = "Firth penalised logistic regression on log2(dose); profile intervals"

    @property
    def n_runs(self) -> int:
        return int(self.retained.size)

    @property
    def doses(self) -> list[float]:
        return sorted({float(2.0**v) for v in self.log_dose})

    @property
    def separated(self) -> bool:
        """Complete separation: some dose splits every failure below from every success
        above (maximum likelihood would have no finite slope)."""
        fails, wins = self.log_dose[self.retained == 0], self.log_dose[self.retained == 1]
        if fails.size == 0 or wins.size == 0:
            return True
        return bool(fails.max() < wins.min() or wins.max() < fails.min())

    def p_at(self, dose: float | np.ndarray) -> np.ndarray:
        return special.expit(self.intercept + self.slope * np.log2(dose))

    def _limits(self) -> tuple[float, float]:
        return (
            float(self.log_dose.min()) - SEARCH_DOUBLINGS,
            float(self.log_dose.max()) + SEARCH_DOUBLINGS,
        )

    def slope_estimate(self) -> Estimate:
        """The slope per doubling, with its profile interval."""
        x, y, m = _grouped(self.log_dose, self.retained)

        def fixed_slope(slope: float) -> float:
            return _profile_max(
                lambda b0: _penalised_loglik(np.array([b0, slope]), x, y, m), self.intercept
            )

        spread = 10.0 * abs(self.slope) + 20.0
        low, high = profile.interval(
            fixed_slope,
            self.slope,
            self.penalised_loglik,
            self.slope - spread,
            self.slope + spread,
        )
        return Estimate(self.slope, low, high)

    def ed(self, p: float) -> Estimate:
        """ED_p: the dose at which P(retained) = p, in dose units, with its profile
        interval (searched up to SEARCH_DOUBLINGS beyond the tested doses)."""
        if not 0.0 < p < 1.0:
            raise ValueError(f"p must be inside (0, 1), got {p}")
        target = float(special.logit(p))
        x, y, m = _grouped(self.log_dose, self.retained)
        lower, upper = self._limits()
        theta = (target - self.intercept) / self.slope if self.slope else math.inf
        if not lower <= theta <= upper:
            # the curve reaches p only far outside the doses tried (or never: flat)
            return Estimate(float(2.0**theta) if math.isfinite(theta) else math.inf, None, None)

        def fixed_theta(value: float) -> float:
            return _profile_max(
                lambda s: _penalised_loglik(np.array([target - s * value, s]), x, y, m),
                self.slope,
            )

        low, high = profile.interval(fixed_theta, theta, self.penalised_loglik, lower, upper)
        return Estimate(
            float(2.0**theta),
            None if low is None else float(2.0**low),
            None if high is None else float(2.0**high),
        )

    def summary(self, target_p: float = 0.8) -> dict[str, Any]:
        """What a study report stores for one size."""
        return {
            "ed50": self.ed(0.5).to_dict(),
            f"ed{round(target_p * 100)}": self.ed(target_p).to_dict(),
            "slope": self.slope_estimate().to_dict(),
            "intercept": self.intercept,
            "n_runs": self.n_runs,
            "doses": self.doses,
            "excluded_runs": self.excluded,
            "separated": self.separated,
            "method": self.method,
        }


def fit(doses: Sequence[float], retained: Sequence[bool | int]) -> DoseResponse:
    """Fit the dose-response of runs at `doses` (instances per batch, placed + natural)
    that did or did not retain the skill. Runs at dose 0 are left out (no log dose) and
    counted. ValueError without two distinct positive doses."""
    if len(doses) != len(retained):
        raise ValueError(f"{len(doses)} doses but {len(retained)} outcomes")
    dose = np.asarray(doses, dtype=float)
    outcome = np.asarray(retained, dtype=float)
    if np.any(dose < 0) or not np.all(np.isfinite(dose)):
        raise ValueError("doses must be finite and >= 0")
    if not np.all((outcome == 0) | (outcome == 1)):
        raise ValueError("outcomes must be 0/1 (retained or not)")
    keep = dose > 0
    x, y = np.log2(dose[keep]), outcome[keep]
    if np.unique(x).size < 2:
        raise ValueError("a dose-response needs runs at two or more distinct positive doses")
    beta, value = _maximise(*_grouped(x, y), np.zeros(2))
    return DoseResponse(
        intercept=float(beta[0]),
        slope=float(beta[1]),
        log_dose=x,
        retained=y,
        penalised_loglik=value,
        excluded=int((~keep).sum()),
    )
