"""PNG plots of a scan report: rates with intervals, and gap distributions.

Both read only the report dict, so they can be redrawn from a stored report.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABEL_CHARS = 28


def _label(report_skills: dict[str, Any], skill_id: str) -> str:
    """The skill's name when the report carries one, else its id; shortened to fit."""
    text = report_skills.get(skill_id, {}).get("name") or skill_id
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def plot_rates(report: dict[str, Any], path: str) -> str:
    """Instances per million tokens per skill, log axis, with 95% interval bars.

    A skill with no instance has no point on a log axis; it is drawn as an
    open marker at its interval's upper bound, labelled "none found (< hi)".
    """
    skills = report["skills"]
    names = list(skills)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * max(1, len(names))))
    for y, sid in enumerate(names):
        s = skills[sid]
        lo, hi = s["per_million_tokens_ci95"]
        rate = s["per_million_tokens"]
        if s["instances"] > 0:
            ax.errorbar(rate, y, xerr=[[rate - lo], [hi - rate]], fmt="o", color="C0", capsize=4)
            ax.annotate(
                f"{s['instances']:,} inst.",
                (hi, y),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        else:
            ax.plot([hi], [y], marker="<", mfc="none", color="C3")
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
    ax.set_xlabel(f"instances per million tokens ({unit}), 95% exact Poisson interval")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_title("Skill frequency in the corpus")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_gaps(report: dict[str, Any], path: str) -> str:
    """Histogram of gaps between consecutive instances per skill, log-spaced bins.

    Bottom axis in tokens, top axis in batches; the dashed line marks one
    batch, the dotted line the mean gap.
    """
    skills = report["skills"]
    batch_tokens = report.get("corpus", {}).get("batch_tokens", 1)
    names = list(skills) or ["(no skills)"]
    has_gaps = [bool((skills.get(n, {}).get("gap_histogram") or {}).get("counts")) for n in names]
    heights = [2.2 if g else 0.7 for g in has_gaps]
    fig, axes = plt.subplots(
        len(names),
        1,
        figsize=(8, 0.6 + sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, sid, gapped in zip(axes[:, 0], names, has_gaps, strict=True):
        s = skills.get(sid, {})
        hist = s.get("gap_histogram")
        if not gapped:
            ax.set_title(
                f"{_label(skills, sid)}: {s.get('instances', 0)} instances", fontsize=10, loc="left"
            )
            ax.text(
                0.5,
                0.5,
                "fewer than 2 instances: no gaps",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        median = s["gap_tokens"]["median"]
        zeros = f", {hist['zeros']} at the same position" if hist["zeros"] else ""
        ax.set_title(
            f"{_label(skills, sid)}: {s['instances']:,} instances, median gap {median:,.0f} tokens "
            f"= {median / batch_tokens:.3g} batches{zeros}",
            fontsize=10,
            loc="left",
        )
        edges, counts = hist["edges"], hist["counts"]
        ax.stairs(counts, edges, fill=True, alpha=0.6)
        ax.set_xscale("log")
        ax.axvline(batch_tokens, color="k", ls="--", lw=1, label="one batch")
        ax.axvline(s["gap_tokens"]["mean"], color="C3", ls=":", lw=1.5, label="mean gap")
        ax.set_ylabel("gaps")
        top = ax.secondary_xaxis(
            "top", functions=(lambda x: x / batch_tokens, lambda b: b * batch_tokens)
        )
        top.tick_params(labelsize=8)
        ax.legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel(
        "gap between consecutive instances: tokens (bottom axis), batches (top axis)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
