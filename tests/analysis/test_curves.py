"""The readout's four-parameter log-logistic curve recovers what it was simulated from."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import curves


def test_recovers_a_known_curve() -> None:
    rng = np.random.default_rng(4)
    doses = np.repeat([0.25, 0.5, 1, 2, 4, 8, 16], 6).astype(float)
    truth = curves.log_logistic(np.log2(doses), 0.5, 0.95, 3.0, np.log2(2.0))
    fit = curves.fit_readout(doses, truth + rng.normal(0, 0.02, doses.size))
    assert fit.floor == pytest.approx(0.5, abs=0.03)
    assert fit.ceiling == pytest.approx(0.95, abs=0.03)
    assert fit.midpoint == pytest.approx(2.0, rel=0.15)
    low, high = fit.ci95["midpoint"]
    assert low < 2.0 < high
    assert fit.rise_doublings == pytest.approx(curves.RISE / 3.0, rel=0.3)
    assert fit.to_dict()["n"] == doses.size


def test_a_gradual_shift_has_a_wide_rise() -> None:
    rng = np.random.default_rng(5)
    doses = np.repeat([0.25, 0.5, 1, 2, 4, 8, 16], 6).astype(float)
    steep = curves.log_logistic(np.log2(doses), 0.5, 0.95, 6.0, 1.0)
    slow = curves.log_logistic(np.log2(doses), 0.5, 0.95, 0.8, 1.0)
    noise = rng.normal(0, 0.01, doses.size)
    assert (
        curves.fit_readout(doses, slow + noise).rise_doublings
        > 3 * curves.fit_readout(doses, steep + noise).rise_doublings
    )


def test_too_few_doses_is_refused() -> None:
    with pytest.raises(ValueError, match="three or more"):
        curves.fit_readout([1, 1, 2, 2, 2], [0.5, 0.5, 0.9, 0.9, 0.9])
