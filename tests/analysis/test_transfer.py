"""Size transfer: the line through log ED50 against log parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.dose import Estimate
from analysis.transfer import SizePoint, fit_line, size_transfer


def points(slope: float = -0.5, noise: float = 0.0, half: float = 0.2) -> list[SizePoint]:
    rng = np.random.default_rng(8)
    out = []
    sizes = (("nano", 120_000), ("micro", 500_000), ("mini", 2_000_000), ("small", 8_000_000))
    for name, n in sizes:
        ed = math.exp(math.log(50.0) + slope * math.log(n / 120_000) + rng.normal(0, noise))
        out.append(SizePoint(name, n, Estimate(ed, ed * math.exp(-half), ed * math.exp(half))))
    return out


def test_recovers_a_power_law() -> None:
    line = fit_line(points())
    assert line.slope == pytest.approx(-0.5, abs=1e-9)


def test_agrees_with_statsmodels_wls() -> None:
    import statsmodels.api as sm

    pts = points(noise=0.1)
    line = fit_line(pts)
    x = np.log([p.parameters for p in pts])
    y = np.log([p.ed50.value for p in pts])
    wls = sm.WLS(y, sm.add_constant(x), weights=np.full(x.size, 1.0)).fit()
    assert line.slope == pytest.approx(wls.params[1])
    assert math.sqrt(line.cov[1, 1]) == pytest.approx(wls.bse[1])


def test_leave_largest_out_and_extrapolation_flag() -> None:
    out = size_transfer(points(noise=0.05), predict=[10_000_000, 1_000_000_000])
    assert out["leave_largest_out"]["size"] == "small"
    assert out["leave_largest_out"]["inside"]
    near, far = out["predictions"]
    assert not near["extrapolates"] and far["extrapolates"]


def test_open_intervals_are_left_out_and_two_are_needed() -> None:
    pts = points()
    opened = [SizePoint(p.size, p.parameters, Estimate(p.ed50.value, None, None)) for p in pts[1:]]
    assert "undetermined" in size_transfer([pts[0], *opened])
