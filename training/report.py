"""PNG plots of a verification (matplotlib, Agg backend: no display needed).

- accuracy_<skill>_<size>.png: held-out (rule) and seen (memorisation) value of the
  verdict's metric (forced choice or exact match) over training, one panel per arm, one
  line per seed, with the threshold and chance;
- final_accuracy_<skill>.png: the metric's final held-out value across seeds per arm
  (box and points), one panel per size, annotated with P(retained) and the verdict;
- general_loss.png: general held-out loss over training per arm, one panel per size;
- forgetting_<skill>.png: loss rise between exposures per arm and seed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from curation.atomic import save_figure  # noqa: E402
from training.trainer import RunResult  # noqa: E402
from training.verdict import METRIC_KEYS  # noqa: E402

Run = tuple[str, str, int, RunResult]
"""(arm, size, seed, result)."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _colors(arms: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {arm: cmap(i % 10) for i, arm in enumerate(arms)}


def _curve(result: RunResult, skill_id: str, metric: str) -> tuple[list[float], list[float]]:
    points = [
        (e["tokens"], e["skills"][skill_id][metric])
        for e in result.evals
        if e["skills"].get(skill_id, {}).get(metric) is not None
    ]
    return [x for x, _ in points], [y for _, y in points]


def _save(fig: Any, path: Path) -> Path:
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def accuracy_curves(runs: list[Run], skill_id: str, size: str, lines: dict, out: Path) -> Path:
    skill_name = lines.get("name") or skill_id
    metric = lines.get("metric", "exact")
    readout = METRIC_KEYS[metric]
    arms = list(dict.fromkeys(arm for arm, s, _, _ in runs if s == size))
    fig, axes = plt.subplots(
        2, len(arms), figsize=(4.2 * len(arms), 6), sharex=True, sharey=True, squeeze=False
    )
    colors = plt.get_cmap("viridis")
    for col, arm in enumerate(arms):
        seeds = [(seed, r) for a, s, seed, r in runs if a == arm and s == size]
        for row, (key, label) in enumerate(
            [
                (f"heldout_{readout}", f"held-out {metric} (rule)"),
                (f"seen_{readout}", f"seen {metric} (memory)"),
            ]  # fmt: skip
        ):
            ax = axes[row][col]
            for i, (seed, result) in enumerate(seeds):
                xs, ys = _curve(result, skill_id, key)
                color = colors(i / max(1, len(seeds) - 1) * 0.85)
                ax.plot(xs, ys, color=color, lw=1.3, alpha=0.85, label=f"seed {seed}")
            if not any(_curve(r, skill_id, key)[0] for _, r in seeds):
                ax.text(0.5, 0.5, "no instances placed", ha="center", transform=ax.transAxes)
            ax.axhline(lines["threshold"], color="k", ls="--", lw=0.9, label="threshold")
            ax.axhline(lines["chance"], color="gray", ls=":", lw=0.9, label="chance")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(arm)
            if col == 0:
                ax.set_ylabel(label)
            if row == 1:
                ax.set_xlabel("training tokens")
                ax.xaxis.set_major_formatter(EngFormatter())
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
               bbox_to_anchor=(0.5, -0.04), frameon=False)  # fmt: skip
    fig.suptitle(f"{skill_name}, model {size}: {metric} over training")
    return _save(fig, out / f"accuracy_{_safe(skill_id)}_{_safe(size)}.png")


def final_accuracy(
    runs: list[Run], verdicts: list[dict], skill_id: str, out: Path, label: str = ""
) -> Path:
    sizes = list(dict.fromkeys(s for _, s, _, _ in runs))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        rows = [v for v in verdicts if v["skill_id"] == skill_id and v["size"] == size]
        data = [v["accuracies"] for v in rows]
        ax.boxplot(data, widths=0.5, showfliers=False)
        for i, v in enumerate(rows, start=1):
            n = len(v["accuracies"])
            xs = [i + 0.12 * (j - (n - 1) / 2) / max(1, n / 2) for j in range(n)]
            ax.scatter(xs, v["accuracies"], s=22, zorder=3, color="tab:blue")
            ax.text(i, 1.04, f"P={v['p_retained']:.2f}\n{v['verdict']}", ha="center", fontsize=8)
        if rows:
            ax.axhline(rows[0]["threshold"], color="k", ls="--", lw=0.9)
            ax.text(0.52, rows[0]["threshold"], "threshold", va="bottom", fontsize=7)
        ax.set_xticks(range(1, len(rows) + 1), [v["arm"] for v in rows])
        ax.set_ylim(-0.02, 1.16)
        ax.set_title(f"model {size}", pad=22)
        ax.set_ylabel(f"final held-out {rows[0]['metric'] if rows else 'metric'}")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{label or skill_id}: final accuracy across seeds", y=1.03)
    return _save(fig, out / f"final_accuracy_{_safe(skill_id)}.png")


def general_loss(runs: list[Run], out: Path) -> Path:
    sizes = list(dict.fromkeys(s for _, s, _, _ in runs))
    colors = _colors(list(dict.fromkeys(a for a, _, _, _ in runs)))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.8), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        labelled: set[str] = set()
        for arm, s, _, result in runs:
            pts = [(e["tokens"], e["general_loss"]) for e in result.evals[1:]]
            pts = [p for p in pts if p[1] is not None]
            if s != size or not pts:
                continue
            label = None if arm in labelled else arm
            labelled.add(arm)
            ax.plot(*zip(*pts, strict=True), color=colors[arm], lw=1.1, alpha=0.8, label=label)
        ax.set_title(f"model {size}")
        ax.set_xlabel("training tokens")
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.set_ylabel("general held-out loss (nats/byte)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("general held-out loss per arm (one line per seed)")
    return _save(fig, out / "general_loss.png")


def forgetting(runs: list[Run], skill_id: str, out: Path, label: str = "") -> Path:
    sizes = list(dict.fromkeys(s for _, s, _, _ in runs))
    arms = list(dict.fromkeys(a for a, _, _, _ in runs))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.8), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        for i, arm in enumerate(arms):
            cells = [r.retention.get(skill_id, {}) for a, s, _, r in runs if a == arm and s == size]
            values = [c["forgetting"] for c in cells if c.get("forgetting") is not None]
            if values:
                ax.scatter([i] * len(values), values, s=24, color="tab:red", zorder=3)
                ax.plot([i - 0.2, i + 0.2], [sum(values) / len(values)] * 2, color="k", lw=1.5)
            else:
                where = blended_transform_factory(ax.transData, ax.transAxes)
                ax.text(
                    i, 0.5, "no exposures\nwith a gap", ha="center", fontsize=8, transform=where
                )
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_title(f"model {size}")
        ax.set_ylabel("probe loss before next - after exposure")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{label or skill_id}: forgetting between exposures (per seed; bar = mean)")
    return _save(fig, out / f"forgetting_{_safe(skill_id)}.png")


def plot_verification(
    runs: list[Run], verdicts: list[dict], lines: dict[str, dict], out: Path
) -> list[str]:
    """Every plot of a verification into `out`; returns the file paths.

    `lines`: per skill id, {"threshold": float, "chance": float, "name": str, "metric":
    str}; titles name
    the skill by its name (its id without one), file names keep the id.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = [general_loss(runs, out)]
    for skill_id, skill_lines in lines.items():
        for size in dict.fromkeys(s for _, s, _, _ in runs):
            paths.append(accuracy_curves(runs, skill_id, size, skill_lines, out))
        label = skill_lines.get("name") or skill_id
        paths.append(final_accuracy(runs, verdicts, skill_id, out, label))
        paths.append(forgetting(runs, skill_id, out, label))
    return [str(p) for p in paths]
