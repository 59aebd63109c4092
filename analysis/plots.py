"""Study figures: P(retained) against dose with its fitted curve and band, the readout
against dose with its log-logistic curve, and general loss against dose; for a repetition
study, held-out and seen readouts and the paired general-loss cost against copies per
unique instance; for a spacing study, P, the readout and forgetting against the period.

The band is the ED_p profile interval for p from 0.05 to 0.95, drawn as a horizontal
band around the curve: where the dose achieving each P lies, with 95% confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis import curves, dose, trends  # noqa: E402
from analysis.study import RunPoint  # noqa: E402

BAND_P = np.linspace(0.05, 0.95, 19)


def _band(fit: dose.DoseResponse) -> tuple[list[float], list[float], list[float]]:
    ps, lows, highs = [], [], []
    for p in BAND_P:
        est = fit.ed(float(p))
        if est.low is not None and est.high is not None:
            ps.append(float(p))
            lows.append(est.low)
            highs.append(est.high)
    return ps, lows, highs


def dose_response(runs: Sequence[RunPoint], out: Path, title: str = "") -> list[Path]:
    """One PNG per size: P with Wilson bars, seeds as points, curve and band; readout;
    general loss."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)  # jitter only
    for size in sorted({r.size for r in runs}):
        cell = [r for r in runs if r.size == size]
        doses = np.array([r.dose for r in cell])
        fig, (ax_p, ax_r, ax_l) = plt.subplots(1, 3, figsize=(14, 4))
        _p_with_wilson(ax_p, cell, "dose")
        jitter = doses * 2 ** rng.uniform(-0.08, 0.08, doses.size)
        won = np.array([r.retained for r in cell], float)
        ax_p.scatter(jitter, won + rng.uniform(-0.03, 0.03, won.size), s=8, color="0.5")
        try:
            fit = dose.fit(doses.tolist(), won.tolist())
            grid = np.geomspace(doses[doses > 0].min() / 2, doses.max() * 2, 200)
            ax_p.plot(grid, fit.p_at(grid), color="C0")
            ps, lows, highs = _band(fit)
            if ps:
                ax_p.fill_betweenx(ps, lows, highs, color="C0", alpha=0.15, label="95% ED_p band")
        except ValueError:
            pass
        ax_p.set(
            xscale="log",
            xlabel="instances per batch (placed + natural)",
            ylabel="P(retained)",
            ylim=(-0.08, 1.08),
            title=f"{title} {size}".strip(),
        )
        ax_r.scatter(jitter, [r.readout for r in cell], s=8, color="0.5")
        try:
            curve = curves.fit_readout(doses.tolist(), [r.readout for r in cell])
            grid = np.geomspace(doses[doses > 0].min() / 2, doses.max() * 2, 200)
            ax_r.plot(grid, curve.at(grid), color="C1")
        except ValueError:
            pass
        ax_r.set(xscale="log", xlabel="instances per batch", ylabel="final readout")
        losses = [(r.dose, r.general_loss) for r in cell if r.general_loss is not None]
        if losses:
            ax_l.scatter(*zip(*losses, strict=True), s=8, color="C2")
        ax_l.set(xscale="log", xlabel="instances per batch", ylabel="general held-out loss")
        paths.append(_save(fig, out / f"dose_response_{size}.png"))
    return paths


def repetition(
    runs: Sequence[RunPoint], out: Path, title: str = "", baseline: str = "baseline"
) -> list[Path]:
    """One PNG per size: held-out and seen readouts per run against copies per unique
    instance (means joined), and general loss minus the baseline's on the same seed."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for size in sorted({r.size for r in runs}):
        cell = [r for r in runs if r.size == size and r.copies is not None]
        if not cell:
            continue
        base = {r.seed: r.general_loss for r in runs
                if r.size == size and r.arm == baseline and r.general_loss is not None}  # fmt: skip
        fig, (ax_r, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
        levels = sorted({r.copies for r in cell if r.copies is not None})
        for name, color, value in (("held-out", "C0", "readout"), ("seen", "C3", "seen_readout")):
            xs = [r.copies for r in cell if getattr(r, value) is not None]
            ys = [getattr(r, value) for r in cell if getattr(r, value) is not None]
            ax_r.scatter(xs, ys, s=10, color=color, alpha=0.5)
            means = [np.mean([y for x, y in zip(xs, ys, strict=True) if x == c] or [np.nan])
                     for c in levels]  # fmt: skip
            ax_r.plot(levels, means, color=color, label=name)
        ax_r.set(xscale="log", xlabel="copies per unique instance", ylabel="final readout",
                 title=f"{title} {size}".strip())  # fmt: skip
        ax_r.legend()
        diffs = [(r.copies, r.general_loss - base[r.seed]) for r in cell
                 if r.general_loss is not None and r.seed in base]  # fmt: skip
        if diffs:
            ax_l.scatter(*zip(*diffs, strict=True), s=10, color="C2")
        ax_l.axhline(0.0, color="0.6", lw=1)
        ax_l.set(xscale="log", xlabel="copies per unique instance",
                 ylabel="general loss - baseline (same seed)")  # fmt: skip
        paths.append(_save(fig, out / f"repetition_{size}.png"))
    return paths


def spacing(runs: Sequence[RunPoint], out: Path, title: str = "") -> list[Path]:
    """One PNG per size, against the dosing period (a dose every n batches, log2 axis):
    P(retained) with Wilson bars and seeds as points; the final readout per run and its
    mean; forgetting between exposures per run (loss rise from just after an exposure to
    just before the next) and its mean."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)  # jitter only
    for size in sorted({r.size for r in runs}):
        cell = [r for r in runs if r.size == size and r.period]
        if not cell:
            continue
        fig, (ax_p, ax_r, ax_f) = plt.subplots(1, 3, figsize=(14, 4))
        _p_with_wilson(ax_p, cell, "period")
        periods = np.array([r.period for r in cell], float)
        jitter = periods * 2 ** rng.uniform(-0.08, 0.08, periods.size)
        won = np.array([r.retained for r in cell], float)
        ax_p.scatter(jitter, won + rng.uniform(-0.03, 0.03, won.size), s=8, color="0.5")
        ax_p.set(xscale="log", xlabel="dosing period (batches)", ylabel="P(retained)",
                 ylim=(-0.08, 1.08), title=f"{title} {size}".strip())  # fmt: skip
        for ax, value, label in ((ax_r, "readout", "final readout"),
                                 (ax_f, "forgetting", "forgetting between exposures")):  # fmt: skip
            pairs = [(x, getattr(r, value)) for x, r in zip(jitter, cell, strict=True)
                     if getattr(r, value) is not None]  # fmt: skip
            if pairs:
                ax.scatter(*zip(*pairs, strict=True), s=8, color="0.5")
            levels = sorted({r.period or 0 for r in cell if getattr(r, value) is not None})
            means = [np.mean([getattr(r, value) for r in cell
                              if r.period == n and getattr(r, value) is not None])
                     for n in levels]  # fmt: skip
            ax.plot(levels, means, "o-", color="C1")
            ax.set(xscale="log", xlabel="dosing period (batches)", ylabel=label)
        ax_f.axhline(0.0, color="0.6", lw=1)
        ticks = sorted({r.period or 0 for r in cell})
        for ax in (ax_p, ax_r, ax_f):  # the periods themselves, on a base-2 axis
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(n) for n in ticks])
            ax.minorticks_off()
        paths.append(_save(fig, out / f"spacing_{size}.png"))
    return paths


def _p_with_wilson(ax: Any, cell: Sequence[RunPoint], by: str) -> None:
    """P(retained) at each value of the runs' `by` field, with its Wilson 95% bar."""
    for x in sorted({getattr(r, by) for r in cell}):
        at = [r for r in cell if getattr(r, by) == x]
        k = sum(r.retained for r in at)
        p = k / len(at)
        lo, hi = trends.wilson(k, len(at))
        ax.errorbar([x], [p], yerr=[[p - lo], [hi - p]], fmt="o", color="C0", capsize=3)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
