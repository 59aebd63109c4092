"""Trainer throughput against a plain PyTorch loop, and the CPU demo experiment.

    .venv/bin/python benchmarks/bench_trainer.py [--repeat 3] [--no-record]
    .venv/bin/python benchmarks/bench_trainer.py --experiment [--seeds 5] [--workdir DIR]

Throughput: on one torch thread, the same model, data (a mixture of 16 x 64-token
batches read in order) and optimizer (AdamW, clipping) are trained by (a) a minimal
loop and (b) `train_run` with evaluation reduced to the step-0 and final calls (no
skills, no held-out text) and one checkpoint; best of the repeats, alternating.
Evaluation is timed apart: one `Evaluator.evaluate` call with the demo's settings
(256 probe + 256 seen instances, 32k held-out tokens), and its share of the run time
at the demo's density (one eval every 200 steps).

Experiment: SCIENCE.md's demo at scale. Corpus: stdlib docstring prose
(curation.synthetic_corpus) with `cmp 47 52 : <` instances inserted at random word
boundaries, about one per batch (the natural frequency). Arms: `baseline` (the corpus
alone) and `upweighted` (the same corpus plus 7 instances placed per batch at
sequence starts, docs/mixture-format.md). `nano` model, 5 seeds per arm, 4000 steps,
two worker processes of one thread each (training.verify.DEMO). Prints the verdicts
and appends them to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import re
import runpy
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from curation.skills.probes import sample_instances
from training.data import open_mixture
from training.evaluate import EvalSpec, Evaluator
from training.model import GPT
from training.trainer import TrainConfig, train_run
from training.verify import DEMO, run_verification

ROOT = Path(__file__).resolve().parent
MIX = runpy.run_path(str(ROOT.parent / "tests/training/mixtures.py"))
SEQ_LEN, SEQS_PER_BATCH = 64, 16
STEPS = {"nano": 600, "micro": 150}
NATURAL_PER_BATCH, PLACED_PER_BATCH, MEAN_CHARS = 1.0, 7, 1500


def build_arm(out: Path, n_batches: int, placed: int) -> Path:
    """The demo corpus (same documents in every arm), plus `placed` instances per batch."""
    skill = MIX["cmp_skill"]()
    natural = iter(sample_instances(skill, 4 * n_batches, seed=1))
    rate = NATURAL_PER_BATCH * MEAN_CHARS / (SEQ_LEN * SEQS_PER_BATCH)
    docs = MIX["with_natural"](MIX["prose"](0, mean_chars=MEAN_CHARS), natural, rate, seed=0)
    skills = {"cmp": (skill, MIX["per_batch"](placed))} if placed else None
    return MIX["write_mixture"](
        out, docs, n_batches=n_batches, seq_len=SEQ_LEN, seqs_per_batch=SEQS_PER_BATCH,
        skills=skills,
    )  # fmt: skip


def heldout_docs() -> list[str]:
    return list(itertools.islice(MIX["prose"](1, "heldout", mean_chars=MEAN_CHARS), 40))


def plain_loop(mixture: Path, size: str, steps: int) -> float:
    """Seconds for `steps` steps of the bare loop the trainer must not be much slower than."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = TrainConfig(size=size)
    started = time.perf_counter()
    data = np.memmap(mixture / "tokens-00000.bin", dtype="<u2", mode="r").reshape(-1, SEQ_LEN)
    model = GPT(config.model_config(257, SEQ_LEN))
    optimizer = torch.optim.AdamW(
        model.optimizer_groups(config.weight_decay), lr=config.lr, betas=config.betas
    )
    for b in range(steps):
        x = torch.from_numpy(data[b * SEQS_PER_BATCH : (b + 1) * SEQS_PER_BATCH].astype(np.int64))
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def trainer(mixture: Path, size: str, steps: int, spec: EvalSpec, eval_every: int, out: Path):
    config = TrainConfig(
        size=size, token_budget=steps * SEQ_LEN * SEQS_PER_BATCH, eval_every=eval_every,
        checkpoint_every=max(1, steps // 2), num_threads=1, device="cpu",
    )  # fmt: skip
    started = time.perf_counter()
    train_run(config, mixture, spec, out)
    return time.perf_counter() - started


def eval_seconds(mixture: Path, size: str, spec: EvalSpec, repeat: int) -> float:
    """Best time of one full evaluation call with `spec`."""
    evaluator = Evaluator.build(spec, open_mixture(mixture), n_steps=1)
    model = GPT(TrainConfig(size=size).model_config(257, SEQ_LEN))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        evaluator.evaluate(model)
        times.append(time.perf_counter() - started)
    return min(times)


def throughput(repeat: int) -> str:
    demo = EvalSpec(skills=[MIX["cmp_skill"]()], heldout=heldout_docs(), heldout_tokens=32_768)
    bare = EvalSpec(skills=[])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mixture = build_arm(Path(tmp) / "mix", max(STEPS.values()), PLACED_PER_BATCH)
        for size, steps in STEPS.items():
            plain, ours = 1e9, 1e9
            for r in range(repeat):
                plain = min(plain, plain_loop(mixture, size, steps))
                ours = min(
                    ours, trainer(mixture, size, steps, bare, steps, Path(tmp) / f"{size}{r}")
                )
            tokens = steps * SEQ_LEN * SEQS_PER_BATCH
            one_eval = eval_seconds(mixture, size, demo, repeat)
            share = one_eval / (one_eval + 200 * ours / steps)
            params = GPT(TrainConfig(size=size).model_config(257, SEQ_LEN)).n_params()
            rows.append(
                f"| {size} ({params / 1e6:.2f}M) | {steps} | {tokens / plain:,.0f} | "
                f"{tokens / ours:,.0f} | {ours / plain - 1:+.1%} | {one_eval:.2f} | {share:.1%} |"
            )
            print(rows[-1], flush=True)
    header = (
        "| model | steps | plain loop, tok/s | train_run, tok/s | trainer overhead "
        "| one demo eval, s | eval share every 200 steps |\n|---|---|---|---|---|---|---|\n"
    )
    return header + "\n".join(rows) + "\n"


def natural_per_batch(mixture: Path, steps: int) -> float:
    """Comparison instances in the token stream (a regex scan), per batch."""
    raw = (mixture / "tokens-00000.bin").read_bytes()[: steps * SEQ_LEN * SEQS_PER_BATCH * 2]
    text = np.frombuffer(raw, "<u2").clip(0, 255).astype(np.uint8).tobytes()
    return len(re.findall(rb"cmp \d\d \d\d : [<>=]", text)) / steps


def experiment(seeds: int, steps: int, workers: int, workdir: Path) -> str:
    arms = {
        "baseline": build_arm(workdir / "mixtures/baseline", steps, 0),
        "upweighted": build_arm(workdir / "mixtures/upweighted", steps, PLACED_PER_BATCH),
    }
    started = time.perf_counter()
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.05 or fraction == 1.0:
            last[0] = fraction
            print(f"{time.perf_counter() - started:6.0f} s {fraction:5.1%} {message}", flush=True)

    report = run_verification(
        arms, [MIX["cmp_skill"]()], DEMO["sizes"], list(range(seeds)), steps * 1024,
        steps // 20, None, "cpu", workdir / "runs", progress, heldout_docs(), workers=workers,
        eval_options=DEMO["eval_options"],
        # Its arms are written by tests/training/mixtures.py, not the builder: no stored plan
        # to draw again, so its seeds vary the initialisation only.
        seed_scope="init",
    )  # fmt: skip
    wall = time.perf_counter() - started
    lines = [
        "| arm | cmp per batch (scan) | held-out acc per seed | seen acc (mean) "
        "| general loss (mean) | P(retained) [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in report["verdicts"]:
        seen = "n/a" if v["mean_seen_accuracy"] is None else f"{v['mean_seen_accuracy']:.2f}"
        lines.append(
            f"| {v['arm']} | {natural_per_batch(arms[v['arm']].resolve(), steps):.2f} | "
            f"{', '.join(f'{a:.2f}' for a in v['accuracies'])} | {seen} | "
            f"{v['mean_general_loss']:.3f} | {v['p_retained']:.1f} "
            f"[{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}] | {v['verdict']} |"
        )
    run_seconds = [r["seconds"] for r in report["runs"]]
    effect = next(v for v in report["verdicts"] if v["arm"] == "upweighted")["effect_vs_baseline"]
    lines.append(
        f"\nWall time {wall:.0f} s for {len(run_seconds)} runs of {steps} steps "
        f"({workers} workers x 1 thread); per run {min(run_seconds):.0f}-{max(run_seconds):.0f} s. "
        f"Effect (upweighted - baseline): P {effect['p_retained_diff']:+.1f} "
        f"{_interval(effect['p_retained_diff_ci95'])}, mean accuracy "
        f"{effect['mean_accuracy_diff']:+.2f} {_interval(effect['mean_accuracy_diff_ci95'])}."
    )
    return "\n".join(lines) + "\n"


def _interval(ci: list[float]) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    cpu = models[0] if models else platform.processor()
    return f"{cpu}, nproc={nproc}, Python {platform.python_version()}, torch {torch.__version__}"


def record(title: str, note: str, body: str) -> None:
    results = ROOT / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n\nFigures, machine and date of each run.\n")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    section = (
        f"\n## bench_trainer.py{title}, {datetime.date.today().isoformat()}\n\n"
        f"Machine: {machine()}; load average at the end {load}.\n{note}\n\n{body}"
    )
    with open(results, "a") as fh:
        fh.write(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--experiment", action="store_true", help="run the demo experiment")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=DEMO["token_budget"] // 1024)
    parser.add_argument("--workers", type=int, default=DEMO["workers"])
    parser.add_argument("--workdir", type=Path, default=None, help="keep runs here (resumable)")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.experiment:
        with tempfile.TemporaryDirectory() as tmp:
            body = experiment(args.seeds, args.steps, args.workers, args.workdir or Path(tmp))
        title = " --experiment"
        note = (__doc__ or "").split("\n\n")[3].replace("\n", " ")
    else:
        body, title = throughput(args.repeat), ""
        note = (__doc__ or "").split("\n\n")[2].replace("\n", " ")
    print(body)
    if not args.no_record:
        record(title, note, body)


if __name__ == "__main__":
    main()
