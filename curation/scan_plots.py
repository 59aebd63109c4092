"""PNG plots of a scan report: rates with intervals, and gap distributions.

Both read only the report dict, so they can be redrawn from a stored report.
They draw on `Figure` objects, not pyplot: no global figure state, no backend
to choose (savefig renders PNGs with Agg), nothing to close.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from curation.atomic import save_figure

LABEL_CHARS = 28
DPI = 110


def _label(report_skills: dict[str, Any], skill_id: str) -> str:
    """The skill's name when the report carries one, else its id; shortened to fit."""
    text = report_skills.get(skill_id, {}).get("name") or skill_id
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def plot_rates(report: dict[str, Any], path: str) -> str:
    """Instances per million tokens per skill, log axis, with 95% interval bars.

    The bar with caps is `per_million_tokens_ci95`, which allows for instances
    clustering within documents; the thin grey bar under it is the Poisson
    interval (`per_million_tokens_poisson_ci95`), which assumes independent
    instances. The axis label says so.
    A skill with no instance has no point on a log axis; it is drawn as an
    open marker at its interval's upper bound, labelled "none found (< hi)".
    """
    skills = report["skills"]
    names = list(skills)
    fig = Figure(figsize=(8, 1.2 + 0.55 * max(1, len(names))))
    ax = fig.add_subplot()
    found = [(y, skills[sid]) for y, sid in enumerate(names) if skills[sid]["instances"] > 0]
    none = [(y, skills[sid]) for y, sid in enumerate(names) if skills[sid]["instances"] == 0]
    if found:  # one errorbar call for all: a call per skill costs more than its drawing
        rates = np.array([s["per_million_tokens"] for _, s in found])
        lo, hi = np.array([s["per_million_tokens_ci95"] for _, s in found]).T
        p_lo, p_hi = np.array(
            [
                s.get("per_million_tokens_poisson_ci95", (r, r))
                for (_, s), r in zip(found, rates, strict=True)
            ]
        ).T
        ax.errorbar(
            rates,
            [y + 0.18 for y, _ in found],
            xerr=[rates - p_lo, p_hi - rates],
            fmt="none",
            color="0.6",
            lw=1,
        )
        ax.errorbar(
            rates,
            [y for y, _ in found],
            xerr=[rates - lo, hi - rates],
            fmt="o",
            color="C0",
            capsize=4,
        )
    if none:
        his = [s["per_million_tokens_ci95"][1] for _, s in none]
        ax.plot(his, [y for y, _ in none], ls="none", marker="<", mfc="none", color="C3")
    for y, s in found:
        ax.annotate(
            f"{s['instances']:,} inst.",
            (s["per_million_tokens_ci95"][1], y),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    for y, s in none:
        hi = s["per_million_tokens_ci95"][1]
        ax.annotate(
            f"none found (< {hi:.3g})",
            (hi, y),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color="C3",
        )
    ax.set_xscale("log")
    left, right = ax.get_xlim()
    ax.set_xlim(left, right * 8)  # room for the labels right of the bars
    ax.set_yticks(range(len(names)), [_label(report["skills"], n) for n in names])
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.invert_yaxis()
    unit = report.get("corpus", {}).get("token_unit", {}).get("mode", "bytes")
    ax.set_xlabel(
        f"instances per million tokens ({unit}); 95% interval allowing for clustering "
        "within documents (documents as clusters), grey: Poisson"
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_title("Skill frequency in the corpus")
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)
    return path


# plot_gaps lays its panels out by hand, in inches: tight_layout (or constrained
# layout) measures every tick label of every panel first, half the drawing time.
GAP_AXES_IN, GAP_ABOVE_IN, GAP_BELOW_IN = 1.3, 0.62, 0.28  # a histogram panel's share
NO_GAPS_IN = 0.3  # a line of text for a skill without gaps
MARGIN_IN = {"left": 0.75, "right": 0.25, "top": 0.3, "bottom": 0.45}
FIG_WIDTH_IN = 8.0


def plot_gaps(report: dict[str, Any], path: str) -> str:
    """Histogram of gaps between consecutive instances per skill, log-spaced bins.

    Bottom axis in tokens, top axis in batches; the dashed line marks one
    batch, the dotted line the mean gap. A skill with fewer than 2 instances
    gets a line of text instead of a panel.
    """
    skills = report["skills"]
    batch_tokens = report.get("corpus", {}).get("batch_tokens", 1)
    names = list(skills) or ["(no skills)"]
    has_gaps = [bool((skills.get(n, {}).get("gap_histogram") or {}).get("counts")) for n in names]
    panel_in = GAP_ABOVE_IN + GAP_AXES_IN + GAP_BELOW_IN
    height = (
        MARGIN_IN["top"]
        + MARGIN_IN["bottom"]
        + sum(panel_in if g else NO_GAPS_IN for g in has_gaps)
    )
    fig = Figure(figsize=(FIG_WIDTH_IN, height))
    left = MARGIN_IN["left"] / FIG_WIDTH_IN
    width = 1 - (MARGIN_IN["left"] + MARGIN_IN["right"]) / FIG_WIDTH_IN
    y = height - MARGIN_IN["top"]  # inches from the bottom, moving down
    legend = []
    for sid, gapped in zip(names, has_gaps, strict=True):
        s = skills.get(sid, {})
        if not gapped:
            y -= NO_GAPS_IN
            fig.text(
                left,
                (y + 0.08) / height,
                f"{_label(skills, sid)}: {s.get('instances', 0)} instances (fewer than 2: no gaps)",
                fontsize=10,
            )
            continue
        y -= panel_in
        ax = fig.add_axes((left, (y + GAP_BELOW_IN) / height, width, GAP_AXES_IN / height))
        hist = s["gap_histogram"]
        median = s["gap_tokens"]["median"]
        zeros = f", {hist['zeros']} at the same position" if hist["zeros"] else ""
        # A title at a fixed place: set_title would measure the top axis to clear it.
        fig.text(
            left,
            (y + panel_in - 0.22) / height,
            f"{_label(skills, sid)}: {s['instances']:,} instances, median gap {median:,.0f} tokens "
            f"= {median / batch_tokens:.3g} batches{zeros}",
            fontsize=10,
        )
        ax.stairs(hist["counts"], hist["edges"], fill=True, alpha=0.6)
        ax.set_xscale("log")
        legend = [
            ax.axvline(batch_tokens, color="k", ls="--", lw=1, label="one batch"),
            ax.axvline(s["gap_tokens"]["mean"], color="C3", ls=":", lw=1.5, label="mean gap"),
        ]
        ax.set_ylabel("gaps")
        top = ax.secondary_xaxis(
            "top", functions=(lambda x: x / batch_tokens, lambda b: b * batch_tokens)
        )
        top.tick_params(labelsize=8)
        top.xaxis.set_minor_locator(NullLocator())  # ticks are most of the drawing time
    if legend:  # one legend for all panels, top right
        fig.legend(handles=legend, loc="upper right", fontsize=8, ncols=2, frameon=False)
    fig.text(
        0.5,
        0.12 / height,
        "gap between consecutive instances: tokens (bottom axis), batches (top axis)",
        ha="center",
    )
    save_figure(fig, path, dpi=DPI)
    return path


SCAN_PLOTS = {"rates.png": plot_rates, "gaps.png": plot_gaps}
"""A scan's plots by artifact name. Each reads only the report, so a service can store the
report first and draw these after it (or when first asked for), off the scan's path."""


def draw_scan_plots(report: dict[str, Any], out_dir: str, names: Any = None) -> dict[str, str]:
    """Draw the named plots (all of `SCAN_PLOTS` by default) into `out_dir`; name -> path.
    Each file is written atomically, so two processes drawing the same plot at once leave
    one whole file."""
    chosen = SCAN_PLOTS if names is None else {n: SCAN_PLOTS[n] for n in names}
    return {name: draw(report, os.path.join(out_dir, name)) for name, draw in chosen.items()}
