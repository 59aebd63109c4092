"""The adaptive dose-response design: where to put the next runs, and when to stop.

1. A coarse grid first: doses every `GRID_STEP` doublings from `min_dose` to `max_dose`
   (both included), `seeds_per_point` runs each.
2. Then, while the budget allows, the next point goes where the fitted P crosses the
   target (ED_target), with one point half a doubling either side, clamped to the bounds
   and rounded to a quarter doubling (so repeated looks reuse doses).
3. Stop when the ED_target interval is bounded and narrower than `factor` (high / low),
   or when the next point would exceed `max_runs`.

Every call returns its decision and the reason, for the study's report. A study with
several skills or sizes trains every dose of a look on all of them: `combine` joins their
decisions into one look.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis import dose as dose_model

GRID_STEP = 2.0
"""Doublings between the coarse grid's doses (0.25, 1, 4, 16 for bounds 0.25-16)."""
ROUND_TO = 0.25
"""New doses are rounded to this fraction of a doubling."""


@dataclass(frozen=True)
class Decision:
    doses: list[float]
    """Doses for the next look (seeds_per_point runs each); empty when stopping."""
    done: bool
    reason: str
    fit: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """For a report stored as JSON: an infinite ED (a flat fit) reads null, as
        PostgreSQL's JSON has no Infinity."""
        return _finite(
            {"doses": self.doses, "done": self.done, "reason": self.reason, "fit": self.fit}
        )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def grid(min_dose: float, max_dose: float, step: float = GRID_STEP) -> list[float]:
    if not 0 < min_dose < max_dose:
        raise ValueError(f"need 0 < min_dose < max_dose, got {min_dose} and {max_dose}")
    lo, hi = math.log2(min_dose), math.log2(max_dose)
    points = list(np.arange(lo, hi, step)) + [hi]
    return [float(2.0**p) for p in points]


def _rounded(log_dose: float, lo: float, hi: float) -> float:
    clamped = min(max(log_dose, lo), hi)
    return float(2.0 ** (round(clamped / ROUND_TO) * ROUND_TO))


def next_doses(
    doses: Sequence[float],
    retained: Sequence[bool | int],
    *,
    min_dose: float,
    max_dose: float,
    max_runs: int,
    seeds_per_point: int,
    target_p: float = 0.8,
    factor: float = 2.0,
) -> Decision:
    """The next look of an adaptive dose-response, given the runs so far."""
    if seeds_per_point < 1 or max_runs < seeds_per_point:
        raise ValueError("max_runs must allow at least one point of seeds_per_point runs")
    if not doses:
        first = grid(min_dose, max_dose)
        while len(first) * seeds_per_point > max_runs and len(first) > 2:
            first = first[::2] if len(first) > 3 else [first[0], first[-1]]
        return Decision(first, False, f"coarse grid every {GRID_STEP:g} doublings")
    budget = max_runs - len(doses)
    try:
        fit = dose_model.fit(doses, retained)
    except ValueError as exc:
        return Decision([], True, f"stopped: {exc}")
    ed = fit.ed(target_p)
    summary = {"ed": ed.to_dict(), "target_p": target_p, "n_runs": fit.n_runs}
    width = ed.ratio()
    if width is not None and width <= factor:
        return Decision(
            [],
            True,
            f"ED{round(target_p * 100)} interval is {width:.2f}x wide (<= {factor:g}x)",
            summary,
        )
    if budget < seeds_per_point:
        return Decision([], True, f"budget spent: {len(doses)} of {max_runs} runs", summary)
    lo, hi = math.log2(min_dose), math.log2(max_dose)
    if math.isfinite(ed.value) and ed.value > 0:
        centre = math.log2(ed.value)
        where = f"around the estimated ED{round(target_p * 100)} {ed.value:.3g}"
    else:  # the curve is flat: look where the data are thinnest, mid-range
        centre = (lo + hi) / 2
        where = "mid-range (the fit does not cross the target inside the bounds)"
    candidates = []
    for offset in (0.0, -0.5, 0.5):
        value = _rounded(centre + offset, lo, hi)
        if value not in candidates:
            candidates.append(value)
    room = budget // seeds_per_point
    chosen = candidates[: max(room, 1)]
    interval = "open" if width is None else f"{width:.2f}x wide"
    return Decision(chosen, False, f"{where}; interval {interval}", summary)


def combine(decisions: Mapping[str, Decision], *, room: int) -> Decision:
    """One look for several fits (each skill at each size; every dose of a look trains on
    all of them): the union of the doses the undecided fits ask for, each fit's first
    choice (its estimated ED) before the points either side, at most `room` doses. Done
    once every fit is; the reason and fit of each are kept under its key."""
    fits = {key: d.fit for key, d in decisions.items()}
    if len(decisions) == 1:
        reason = next(iter(decisions.values())).reason
    else:
        reason = "; ".join(f"{key}: {d.reason}" for key, d in decisions.items())
    open_ = [d for d in decisions.values() if not d.done]
    if not open_:
        return Decision([], True, reason, fits)
    if room < 1:
        return Decision([], True, f"budget spent; {reason}", fits)
    ranked: list[float] = []
    for rank in range(max(len(d.doses) for d in open_)):
        for d in open_:
            if rank < len(d.doses) and d.doses[rank] not in ranked:
                ranked.append(d.doses[rank])
    return Decision(ranked[:room], False, reason, fits)
