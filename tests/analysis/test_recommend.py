"""The recommendation, or the reason there is none."""

from __future__ import annotations

import numpy as np

from analysis import dose
from analysis.recommend import recommend

DOSES = np.repeat([0.5, 1, 2, 4, 8], 8).astype(float)


def test_a_clear_threshold_gives_a_dose_and_its_interval() -> None:
    rng = np.random.default_rng(10)
    won = (rng.random(DOSES.size) < 1 / (1 + np.exp(-3 * (np.log2(DOSES) - 1)))).astype(int)
    out = recommend(
        dose.fit(DOSES, won), size="nano", loss_delta={"mean": 0.004, "ci95": [-0.002, 0.01]}
    )
    assert out["per_batch"] == out["ed"]["ci95"][1]  # the upper bound: the safety margin
    assert "place at least" in out["text"] and "`nano`" in out["text"]
    assert "general loss +0.004 [-0.002, +0.010]" in out["text"]


def test_all_retained_is_not_a_threshold() -> None:
    out = recommend(dose.fit(DOSES, np.ones(DOSES.size)), size="nano")
    assert "all 40 runs retained" in out["undetermined"]


def test_none_retained_and_too_few_runs() -> None:
    assert (
        "no run retained"
        in recommend(dose.fit(DOSES, np.zeros(DOSES.size)), size="n")["undetermined"]
    )
    few = dose.fit([1, 2, 4, 8], [0, 0, 1, 1])
    assert "too few runs" in recommend(few, size="n")["undetermined"]


def test_a_flat_response_says_so() -> None:
    out = recommend(dose.fit(DOSES, np.tile([0, 1], 20)), size="nano")
    assert "slope" in out["undetermined"]
