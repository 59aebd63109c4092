"""The adaptive design: a coarse grid, then points where P crosses the target, then stop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from analysis import design


def test_first_look_is_the_coarse_grid() -> None:
    first = design.next_doses([], [], min_dose=0.25, max_dose=16, max_runs=64, seeds_per_point=8)
    assert first.doses == [0.25, 1.0, 4.0, 16.0] and not first.done


def test_runs_to_a_decision_within_the_budget() -> None:
    rng = np.random.default_rng(9)
    doses: list[float] = []
    won: list[int] = []
    log: list[str] = []
    for _ in range(20):
        step = design.next_doses(
            doses, won, min_dose=0.25, max_dose=16, max_runs=96, seeds_per_point=8
        )
        log.append(step.reason)
        if step.done:
            break
        for d in step.doses:
            p = special.expit(3.0 * (np.log2(d) - 1.0))
            doses += [d] * 8
            won += (rng.random(8) < p).astype(int).tolist()
    assert step.done and len(doses) <= 96
    assert log[0].startswith("coarse grid")
    # later looks sit near the true ED80 (2^(1 + logit(0.8)/3) = 3.2 per batch)
    later = sorted(set(doses) - {0.25, 1.0, 4.0, 16.0})
    assert later and all(1.0 <= d <= 8.0 for d in later), later


def test_bad_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="max_runs"):
        design.next_doses([], [], min_dose=1, max_dose=8, max_runs=4, seeds_per_point=8)


def test_combine_joins_undecided_fits_centres_first_within_the_room() -> None:
    nano = design.Decision([2.0, 1.68, 2.38], False, "around 2", {"ed": 2})
    micro = design.Decision([1.0, 2.0, 1.19], False, "around 1", {"ed": 1})
    done = design.Decision([], True, "narrow", {"ed": 4})
    both = design.combine({"s/nano": nano, "s/micro": micro, "s/small": done}, room=3)
    assert both.doses == [2.0, 1.0, 1.68] and not both.done  # each centre, then the sides
    assert both.reason == "s/nano: around 2; s/micro: around 1; s/small: narrow"
    assert both.fit == {"s/nano": {"ed": 2}, "s/micro": {"ed": 1}, "s/small": {"ed": 4}}
    assert design.combine({"s/nano": nano}, room=8).doses == nano.doses
    assert design.combine({"s/nano": nano}, room=8).reason == "around 2"  # one fit: unprefixed


def test_combine_stops_when_every_fit_is_done_or_nothing_fits_the_budget() -> None:
    done = design.Decision([], True, "budget spent: 8 of 8 runs", None)
    stop = design.combine({"s/nano": done}, room=0)
    assert stop.done and stop.doses == [] and stop.reason == "budget spent: 8 of 8 runs"
    open_ = design.Decision([2.0], False, "around 2", None)
    starved = design.combine({"s/nano": open_, "s/micro": done}, room=0)
    assert starved.done and starved.reason.startswith("budget spent")


def test_a_decision_reads_as_json_without_infinities() -> None:
    flat = design.Decision(
        [4.0], False, "mid-range", {"ed": {"value": float("inf"), "ci95": [None, None]}}
    )
    assert flat.to_dict()["fit"] == {"ed": {"value": None, "ci95": [None, None]}}
