"""SCIENCE.md "Studies": the three CPU-scale protocols, run through the service as a user
would (embedded default, the SDK over HTTP), on the demo's skill and corpus.

- (a) dose threshold: natural, 0.5, 1, 2, 3, 4, 6, 8 per batch, 8 seeds each;
- (b) spacing at 2 per batch: every {2,1}, {4,2}, {8,4}, {16,8}, 10 seeds each;
- (c) repetition at 2 per batch: fresh and unique pools of 4,000, 400, 40, 4, plus the
  baseline, 8 seeds each.

nano, 16 x 64-byte batches, 4,000 steps (a multiple of the longest spacing period, so each
final reading sits one period after the last dose), seeds over data and initialisation.
The three studies are submitted together and share the training workers; each one's
report, table and plots are written under `--out`. Nothing here tunes the protocol: the
designs are SCIENCE.md's, and the script records whatever the fits say.

    python benchmarks/study_protocols.py --data-dir /tmp/studies --out /tmp/studies/out
    python benchmarks/study_protocols.py --only dose --seeds 2 --steps 400   # a quick look
    python benchmarks/study_protocols.py --data-dir /tmp/studies --out /tmp/studies/out \
        --reanalyse   # the recorded studies' analysis again, with this checkout's code
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT.parent / "clients" / "python"))

from skillmix_client import Skillmix  # noqa: E402
from skillmix_client.cli import console, study_table  # noqa: E402

from service.auth import create_key  # noqa: E402
from service.cli.demo import (  # noqa: E402
    BATCH_TOKENS,
    DEMO_SKILLS,
    HELDOUT_BATCHES,
    SEQ_LEN,
    STUDY_DOSES,
    make_corpus,
)
from service.cli.embedded import embedded_stack  # noqa: E402
from service.db import session_scope  # noqa: E402

FIXED_DOSE = 2.0
SCHEDULES = [(2, 1), (4, 2), (8, 4), (16, 8)]
POOL_SIZES: list[int | None] = [None, 4000, 400, 40, 4]


def designs(seeds: dict[str, int]) -> dict[str, tuple[str, dict[str, Any], int]]:
    return {
        "dose": ("dose_response", {"doses": STUDY_DOSES}, seeds["dose"]),
        "spacing": (
            "spacing",
            {"dose": FIXED_DOSE, "schedules": [{"n": n, "k": k} for n, k in SCHEDULES]},
            seeds["spacing"],
        ),
        "repetition": (
            "repetition",
            {"dose": FIXED_DOSE, "pool_sizes": POOL_SIZES},
            seeds["repetition"],
        ),
    }


def _ci(value: Any, digits: str = ".3g") -> str:
    low, high = (value or {}).get("ci95") or [None, None]
    if low is None or high is None:
        return "open"
    return f"[{low:{digits}}, {high:{digits}}]"


def _est(value: Any, key: str = "value") -> str:
    if not value or value.get(key) is None:
        return "n/a"
    return f"{value[key]:.3g} {_ci(value)}"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(*names: str) -> str:
    return _row(*names) + "\n" + _row(*["---"] * len(names))


def _dose_tables(body: dict[str, Any]) -> list[str]:
    lines = [_header("dose per batch (placed + natural)", "seeds", "retained",
                     "P [Wilson 95%]", "mean readout")]  # fmt: skip
    for p in body["points"]:
        k = sum(s["retained"] for s in p["seeds"])
        p_ci = f"{p['p_retained']:.2f} {_ci(p, '.2f')}"
        lines.append(_row(f"{p['dose']:.3g}", p["n_seeds"], k, p_ci, f"{p['readout']:.3f}"))
    for size, fit in body["fit"].items():
        lines.append(
            f"\n{size}: slope per doubling {_est(fit.get('slope'))}; ED50 "
            f"{_est(fit.get('ed50'))}; ED80 {_est(fit.get('ed80'))}; {fit.get('n_runs')} runs, "
            f"{fit.get('excluded_runs')} excluded; separated: {fit.get('separated')}."
        )
    for size, rec in body["recommendation"].items():
        lines.append(f"{size}: {rec.get('text') or 'not determined: ' + str(rec['undetermined'])}")
    return lines


def _spacing_tables(body: dict[str, Any]) -> list[str]:
    lines = [_header("period (batches)", "seeds", "P [Wilson 95%]", "mean readout",
                     "mean forgetting (runs measured)")]  # fmt: skip
    for p in body["points"]:
        f = "n/a" if p.get("forgetting") is None else f"{p['forgetting']:+.4f}"
        p_ci = f"{p['p_retained']:.2f} {_ci(p, '.2f')}"
        lines.append(_row(p["period"], p["n_seeds"], p_ci, f"{p['readout']:.3f}",
                          f"{f} ({p.get('n_forgetting', 0)})"))  # fmt: skip
    for size, trend in body["trend"].items():
        lines.append(
            f"\n{size}, per doubling of the period: P slope {_est(trend.get('p_trend'))}; "
            f"readout slope {_est(trend.get('readout_trend'), 'slope')}; forgetting slope "
            f"{_est(trend.get('forgetting_trend'), 'slope')}."
        )
    return lines


def _repetition_tables(body: dict[str, Any]) -> list[str]:
    lines = [_header("pool", "copies per unique", "seeds", "P [Wilson 95%]", "held-out", "seen",
                     "seen - held-out [95%]", "loss - baseline [95%]",
                     "within 2 SD of baseline")]  # fmt: skip
    for size, trend in body["trend"].items():
        points = {p["pool_size"]: p for p in body["points"] if p["size"] == size}
        for row in trend["points"]:
            p, loss, gap = (
                points[row["pool_size"]],
                row["loss_vs_baseline"],
                row["seen_minus_heldout"],
            )
            pool = "fresh" if row["pool_size"] is None else row["pool_size"]
            p_ci = f"{p['p_retained']:.2f} {_ci(p, '.2f')}"
            lines.append(_row(
                pool, f"{row['copies']:.3g}", p["n_seeds"], p_ci,
                f"{p['readout']:.3f}", f"{p.get('seen_readout') or 0:.3f}",
                f"{gap['mean']:+.3f} {_ci(gap)}", f"{loss['mean']:+.4f} {_ci(loss, '.4f')}",
                loss.get("within_2sd"),
            ))  # fmt: skip
        for key in ("heldout_trend", "gap_trend"):
            if key in trend:
                lines.append(f"\n{size} {key} per doubling of copies: {_est(trend[key], 'slope')}")
    for base in body.get("baseline", []):
        lines.append(f"\nbaseline: {base['n_seeds']} seeds, P {base['p_retained']:.2f}, "
                     f"mean readout {base['readout']:.3f}")  # fmt: skip
    return lines


TABLES = {"dose": _dose_tables, "spacing": _spacing_tables, "repetition": _repetition_tables}


def markdown(out: Path) -> str:
    """RESULTS.md tables of the recorded studies (their reanalysed reports where present)."""
    text = []
    for name, tables in TABLES.items():
        path = out / f"{name}.reanalysed.json"
        path = path if path.exists() else out / f"{name}.json"
        if not path.exists():
            continue
        study = json.loads(path.read_text())
        for body in (study.get("report") or {}).get("skills", {}).values():
            natural = body["natural_per_batch"]
            text.append(f"**{name}** (study {study['id']}, natural {natural:.3f} per batch)\n")
            text += [*tables(body), ""]
    return "\n".join(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", action="append", choices=["dose", "spacing", "repetition"])
    ap.add_argument("--seeds", type=int, default=None, help="Override every protocol's seeds.")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument(
        "--reanalyse", action="store_true", help="Analyse the studies recorded in --out again."
    )
    ap.add_argument("--markdown", action="store_true", help="Print --out's studies as tables.")
    args = ap.parse_args()
    if args.reanalyse:
        return reanalyse(args.data_dir, args.out)
    if args.markdown:
        print(markdown(args.out))
        return 0
    seeds = {"dose": 8, "spacing": 10, "repetition": 8}
    if args.seeds:
        seeds = dict.fromkeys(seeds, args.seeds)
    wanted = {k: v for k, v in designs(seeds).items() if not args.only or k in args.only}
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with embedded_stack(args.data_dir) as stack:
        with session_scope() as session:
            _, key = create_key(session, time.strftime("studies-%Y%m%d-%H%M%S"))
        client = Skillmix(base_url=stack.base_url, api_key=key, timeout=120)
        skills = [client.skills.create(**definition) for definition, _ in DEMO_SKILLS]
        corpus = client.corpora.create(
            name="demo-web",
            uri=make_corpus(args.data_dir.resolve() / "corpora" / "demo-web"),
            format="jsonl.gz",
        )
        scan = client.scans.create(
            corpus_id=corpus.id, skill_ids=[s.id for s in skills], batch_tokens=BATCH_TOKENS
        )
        scan = client.scans.wait(scan.id, progress=True)
        target = skills[0]
        studies = {}
        for name, (kind, design, n_seeds) in wanted.items():
            studies[name] = client.studies.create(
                kind=kind, skill_ids=[target.id], corpus_id=corpus.id, scan_id=scan.id,
                design=design, sizes=["nano"], seeds_per_point=n_seeds,
                batch_tokens=BATCH_TOKENS, seq_len=SEQ_LEN,
                token_budget=args.steps * BATCH_TOKENS,
                max_batches=args.steps + HELDOUT_BATCHES, eval_every=max(args.steps // 20, 1),
            )  # fmt: skip
            console.print(f"{name}: study {studies[name].id} ({n_seeds} seeds per point)")
        for name, study in studies.items():
            study = client.studies.wait(study.id, progress=True, timeout=6 * 3600)
            elapsed = time.monotonic() - started
            console.print(f"{name}: {study.job.state} after {elapsed / 60:.1f} min")
            (args.out / f"{name}.json").write_text(
                json.dumps(study.model_dump(mode="json"), indent=1, default=str)
            )
            if study.report is None:
                console.print(f"[red]{name} failed[/red]: {study.job.error}")
                continue
            show(name, study)
            folder = args.data_dir / "artifacts" / study.job.id
            if folder.is_dir():
                shutil.copytree(folder, args.out / name, dirs_exist_ok=True)
    console.print(f"all done in {(time.monotonic() - started) / 60:.1f} min")
    return 0


def show(name: str, study: Any) -> None:
    console.print(study_table(study))
    for body in study.report["skills"].values():
        for size, rec in (body.get("recommendation") or {}).items():
            console.print(f"   {size}: {rec.get('text') or rec.get('undetermined')}")


class _Reanalysis:
    """The study job's context for running its analysis again in this process, on the runs
    already stored (no lease, no queue: it only reads the database and writes files)."""

    def __init__(self, study_id: str, artifact_dir: Path) -> None:
        self.job_id, self.project_id = f"reanalysis-{study_id}", ""
        self.params = {"study_id": study_id}
        self.artifact_dir = artifact_dir

    def progress(self, fraction: float, message: str = "") -> None:
        pass

    def add_artifact(self, name: str, path: Path, media_type: str, *, deferred: bool = False):
        pass

    def detach(self, message: str) -> bool:
        raise NotImplementedError("a reanalysis trains nothing")

    def wait_for(self, message: str, start: Any) -> bool:
        raise NotImplementedError("a reanalysis starts no look")


def reanalyse(data_dir: Path, out: Path) -> int:
    """Run each recorded study's analysis again with this checkout's code, on the runs its
    verification stored: a change to the analysis (not to training) needs no new runs.
    Writes <name>.reanalysed.json and the figures under <name>-reanalysed/."""
    from skillmix_client.types import Study

    from service.cli.embedded import use_embedded
    from service.worker.handlers.study import run_study_job

    use_embedded(data_dir)
    for path in sorted(out.glob("*.json")):
        if path.name.endswith(".reanalysed.json"):
            continue
        name, recorded = path.stem, json.loads(path.read_text())
        ctx = _Reanalysis(recorded["id"], out / f"{name}-reanalysed")
        report = run_study_job(ctx)  # type: ignore[arg-type]
        study = Study.model_validate({**recorded, "report": report})
        (out / f"{name}.reanalysed.json").write_text(
            json.dumps(study.model_dump(mode="json"), indent=1, default=str)
        )
        console.print(f"{name} (reanalysed): {ctx.artifact_dir}")
        show(name, study)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
