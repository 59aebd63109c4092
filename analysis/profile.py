"""Profile-likelihood intervals: the set of values of one parameter whose profile
log-likelihood lies within chi2(1, 0.95) / 2 of the maximum.

Used for the dose-response model's ED_p and slope (analysis.dose) with Firth's penalised
likelihood, as R's logistf does for its profile penalised-likelihood intervals. A side
whose profile never falls that far inside the searched range is open (None): the data
do not bound the parameter there, which a Wald interval would hide.
"""

from __future__ import annotations

from collections.abc import Callable

from scipy import optimize, stats

CHI2_95 = float(stats.chi2.ppf(0.95, df=1))


def interval(
    profile: Callable[[float], float],
    best: float,
    maximum: float,
    lower_limit: float,
    upper_limit: float,
    level: float = 0.95,
    first_step: float = 0.125,
) -> tuple[float | None, float | None]:
    """The profile interval of a parameter estimated at `best`, where `profile(value)` is
    the log-likelihood maximised over the other parameters with this one fixed and
    `maximum` the overall maximum. Each side is searched outwards from `best` in growing
    steps up to its limit, then the crossing is located with Brent's method; None for a
    side that does not cross before its limit."""
    cut = float(stats.chi2.ppf(level, df=1)) / 2.0

    def excess(value: float) -> float:
        return (maximum - profile(value)) - cut

    bounds: list[float | None] = []
    for direction, limit in ((-1.0, lower_limit), (1.0, upper_limit)):
        inside, step, found = best, first_step, None
        while True:
            candidate = best + direction * step
            if (candidate - limit) * direction >= 0:  # past the limit: check it last
                candidate = limit
            if excess(candidate) > 0:
                found = optimize.brentq(excess, *sorted((inside, candidate)), xtol=1e-6)
                break
            if candidate == limit:
                break
            inside, step = candidate, step * 2.0
        bounds.append(found)
    return bounds[0], bounds[1]
