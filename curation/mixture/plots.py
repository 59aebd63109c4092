"""PNG plots of a mixture audit: doses per batch against the plan, and gaps before vs after.

Drawn from the audit (and per-batch arrays the audit computed), so the plots
show what the trainer will read, not what the builder intended.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curation.atomic import save_figure  # noqa: E402

MAX_BARS = 400  # beyond this many batches, lines read better than bars
LABEL_CHARS = 28


def _label(skill_id: str, skill: dict[str, Any]) -> str:
    """The skill's name (its id in an audit without names), shortened to fit."""
    text = skill.get("name") or skill_id
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _target(target: dict[str, Any]) -> str:
    if not target:
        return "not dosed"
    if "every" in target:
        return f"{target['every']['n']} every {target['every']['k']} batches"
    if "fraction" in target:
        return f"{target['fraction']:.3g} of tokens"
    return f"{target['per_batch']:g} per batch"


def _title(sid: str, skill: dict[str, Any]) -> str:
    state = "audit passed" if skill["passed"] else "AUDIT FAILED"
    spacing = "" if skill["spacing"] in ("every", "none") else f", {skill['spacing']}"
    return (
        f"{_label(sid, skill)}: {_target(skill['target'])} ({skill['source']}{spacing}) — "
        f"{skill['placed']['placements']:,} of {skill['planned']['placements']:,} placed, "
        f"{skill['natural']['instances']:,} natural; {state}"
    )


def plot_composition(
    report: dict[str, Any], per_batch: dict[str, dict[str, np.ndarray]], out_dir: str
) -> str:
    """Per skill: placed instances per batch (bars) on the schedule (line), natural ones on top.

    The dashed line is the target rate (per_batch, or n/k for `every`).
    """
    names = list(report["skills"]) or ["(no skills)"]
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 0.4 + 2.4 * len(names)), squeeze=False)
    for ax, sid in zip(axes[:, 0], names, strict=True):
        if sid not in per_batch:
            ax.text(0.5, 0.5, "baseline mixture: no placements", ha="center", va="center")
            ax.set_axis_off()
            continue
        skill, arrays = report["skills"][sid], per_batch[sid]
        batches = np.arange(arrays["planned"].size)
        placed, natural = arrays["placed"], arrays["natural"]
        if batches.size <= MAX_BARS:
            ax.bar(batches, placed, width=1.0, color="C0", alpha=0.7, label="placed (audit)")
            ax.bar(batches, natural, bottom=placed, width=1.0, color="C7", label="natural")
        else:
            ax.fill_between(batches, placed, step="mid", color="C0", alpha=0.6, lw=0,
                            label="placed (audit)")  # fmt: skip
            ax.step(batches, placed + natural, where="mid", color="C7", lw=0.5,
                    label="placed + natural")  # fmt: skip
        ax.step(batches, arrays["planned"], where="mid", color="C1", lw=0.8, label="schedule")
        ax.axhline(_rate(skill), color="k", ls="--", lw=1, label="target rate")
        ax.set_title(_title(sid, skill), fontsize=9, loc="left")
        ax.set_ylabel("instances / batch")
        ax.set_xlim(-0.5, batches.size - 0.5)
        ax.set_ylim(0, max(1, int((placed + natural).max()), int(arrays["planned"].max())) * 1.15)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    axes[-1, 0].set_xlabel("batch (training order)")
    fig.tight_layout()
    path = os.path.join(out_dir, "composition.png")
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def _rate(skill: dict[str, Any]) -> float:
    """The target's nominal instances per batch (per_batch, or n/k for `every`)."""
    target = skill["target"]
    if not target:  # a skill the plan does not dose, audited for its natural instances
        return 0.0
    if "every" in target:
        return target["every"]["n"] / target["every"]["k"]
    return skill["planned"]["per_batch"] if "fraction" in target else target["per_batch"]


def plot_gaps(report: dict[str, Any], manifest: dict[str, Any], out_dir: str) -> str:
    """Per skill: gaps between consecutive instances in the corpus (scan) and in the mixture.

    Log-spaced bins in tokens (top axis in batches); dotted line: the target's
    mean gap; dashed line: one batch.
    """
    batch_tokens = manifest["batch_tokens"]
    names = list(report["skills"]) or ["(no skills)"]
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 0.5 + 2.5 * len(names)), squeeze=False)
    for ax, sid in zip(axes[:, 0], names, strict=True):
        if sid not in report["skills"]:
            ax.set_axis_off()
            continue
        skill = report["skills"][sid]
        # A skill the plan does not dose has no scan numbers in it: the mixture's gaps alone.
        natural = manifest["plan"].get("skills", {}).get(sid, {}).get("natural", {})
        pairs = (
            (natural.get("gap_histogram"), natural.get("gap_tokens"), "corpus (scan)", True),
            (skill["gap_histogram"], skill["gap_tokens_all"], "mixture (audit, all)", False),
        )
        drawn = False
        for hist, summary, label, corpus in pairs:
            if hist and hist["counts"]:
                total = sum(hist["counts"])
                longest = summary["max"] / batch_tokens if summary else 0.0
                ax.stairs(
                    [c / total for c in hist["counts"]], hist["edges"], fill=corpus,
                    color="C7" if corpus else "C0", alpha=0.45 if corpus else 1.0, lw=1.5,
                    label=f"{label}: {total + hist['zeros']:,} gaps, max {longest:.3g} batches",
                )  # fmt: skip
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "fewer than 2 instances: no gaps", ha="center", va="center")
            ax.set_axis_off()
            continue
        ax.set_xscale("log")
        ax.axvline(batch_tokens, color="k", ls="--", lw=1, label="one batch")
        if skill["target_gap_tokens"]:
            mean = skill["target_gap_tokens"]["mean"]
            ax.axvline(mean, color="C1", ls=":", lw=2, label=f"target mean gap ({mean:,.0f})")
        top = ax.secondary_xaxis(
            "top", functions=(lambda x: x / batch_tokens, lambda b: b * batch_tokens)
        )
        top.tick_params(labelsize=7)
        ax.set_title(_title(sid, skill), fontsize=9, loc="left")
        ax.set_ylabel("share of gaps")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    axes[-1, 0].set_xlabel("gap between consecutive instances: tokens (bottom), batches (top)")
    fig.tight_layout()
    path = os.path.join(out_dir, "gaps.png")
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
