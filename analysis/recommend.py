"""A study's answer for one model size, in one line, or an honest "not determined".

The recommended dose is the ED_target's upper 95% bound by default (the safety margin
DESIGN.md's `apply` uses): a dose at which P(retained) >= target is what the data support
with 95% confidence, not merely the point estimate.
"""

from __future__ import annotations

from typing import Any

from analysis.dose import DoseResponse

MIN_RUNS = 10
MIN_DOSES = 3


def recommend(
    fit: DoseResponse | None,
    *,
    size: str,
    target_p: float = 0.8,
    margin: str = "upper",
    loss_delta: dict[str, Any] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """{"per_batch", "ci95", "ed", "text", "general_loss_delta"} or {"undetermined": why}.
    `margin`: "upper" (the ED's upper bound, default) or "estimate"."""
    label = f"ED{round(target_p * 100)}"
    if fit is None:
        return {"undetermined": reason or "no fit"}
    if fit.n_runs < MIN_RUNS or len(fit.doses) < MIN_DOSES:
        return {
            "undetermined": f"too few runs: {fit.n_runs} runs at {len(fit.doses)} doses "
            f"(needs >= {MIN_RUNS} runs at >= {MIN_DOSES} doses)"
        }
    won = fit.retained
    if won.all():
        return {
            "undetermined": f"all {fit.n_runs} runs retained: the threshold is at or "
            f"below the lowest dose tried ({min(fit.doses):g} per batch)"
        }
    if not won.any():
        return {
            "undetermined": f"no run retained: the threshold is above the highest dose "
            f"tried ({max(fit.doses):g} per batch)"
        }
    slope = fit.slope_estimate()
    if slope.low is None or slope.low <= 0:
        return {
            "undetermined": "the slope's interval includes 0: P(retained) does not "
            "rise with the dose in these runs"
        }
    ed = fit.ed(target_p)
    if ed.high is None or ed.low is None:
        return {
            "undetermined": f"the {label} interval is open (not bounded within "
            "the doses tried): more runs near the crossing"
        }
    dose = ed.high if margin == "upper" else ed.value
    loss = ""
    if loss_delta:
        lo, hi = loss_delta["ci95"]
        loss = f"; general loss {loss_delta['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    text = (
        f"place at least {dose:.3g} per batch for `{size}` ({label} {ed.value:.3g}, "
        f"95% CI {ed.low:.3g}-{ed.high:.3g}; {fit.n_runs} runs){loss}"
    )
    return {
        "per_batch": dose,
        "ci95": ed.ci95,
        "ed": ed.to_dict(),
        "target_p": target_p,
        "margin": margin,
        "general_loss_delta": loss_delta,
        "text": text,
    }
