"""Seed-batched training (training.batched) against separate single runs: runs per hour.

    .venv/bin/python benchmarks/bench_seed_group.py [--sizes nano micro] [--groups 1 4 8 16]
        [--steps nano=60 micro=20] [--device cpu|cuda] [--layouts one,split] [--record]

For each size and K, side by side in one run (alternating, K=1 once: a group of one is a
single run), on the demo's batch shape (16 sequences of 64 tokens) with evaluation at
step 0 and the last step only (a small eval set: 64 probe and 64 seen instances, 4096
held-out tokens; evaluation is per member either way):

- `single`: K single runs, one torch thread each, in a pool of `--cores` spawned
  processes (training.parallel.train_runs with seed_group=1: what a verification does);
- `one` (layout): the K seeds as one group in one spawned process with `--cores` torch
  threads;
- `split` (layout): train_runs with seed_group=K and `--cores` workers: plan_groups
  halves the group so every single-thread worker has one (K/2 seeds per group).

Each variant is timed wall-clock (runs per hour = K / seconds x 3600, process start, torch
import, eval-set building and evaluation included) and by the CPU seconds its processes
used (resource.getrusage of the children), which moves less than wall time when other
processes share the cores.

`--steady`: instead, the training step alone, in this process on one thread (CPU time
per member-step, alternating, best of 3): a single run's step (GPT forward/backward,
clip_grad_norm_, AdamW) against a group's (training.batched.grouped_forward, per-member
clip, one AdamW over the stacked weights) at each K; no evaluation, no process start.

With `--device cuda` everything runs in this process, one run at a time for `single`
(K runs one after another) and one group for `one`; it also reports the fraction of the
GPU used: the peak memory allocated by torch over the device's memory
(torch.cuda.max_memory_allocated / total_memory), and the mean of torch.cuda.utilization()
(the driver's "percent of time a kernel was running", via pynvml) sampled every 0.2 s
while the variant ran, when pynvml is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import itertools
import os
import platform
import resource
import runpy
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from training.evaluate import EvalSpec
from training.events import RunKey
from training.parallel import RunSpec, run_parallel, train_runs
from training.trainer import TrainConfig

ROOT = Path(__file__).resolve().parent
MIX = runpy.run_path(str(ROOT.parent / "tests/training/mixtures.py"))
SEQ_LEN, SEQS_PER_BATCH = 64, 16


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class GpuSampler:
    """Mean torch.cuda.utilization() over a variant (None without pynvml), and peak memory."""

    def __init__(self, device: str) -> None:
        self.on = device == "cuda"
        self.samples: list[float] = []
        self.stop = threading.Event()

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        if not self.on:
            yield
            return
        torch.cuda.reset_peak_memory_stats()

        def loop() -> None:
            while not self.stop.wait(0.2):
                try:
                    self.samples.append(float(torch.cuda.utilization()))
                except Exception:  # no pynvml: utilization is not available
                    return

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self.stop.set()
            thread.join()

    def report(self) -> dict[str, Any]:
        if not self.on:
            return {}
        total = torch.cuda.get_device_properties(0).total_memory
        util = sum(self.samples) / len(self.samples) if self.samples else None
        return {"gpu_memory": torch.cuda.max_memory_allocated() / total, "gpu_util": util}


def runs_for(workdir: Path, mixture: Path, size: str, k: int, steps: int, config: TrainConfig):
    budget = steps * SEQ_LEN * SEQS_PER_BATCH
    return [
        RunSpec(RunKey("arm", size, seed), str(mixture), str(workdir / f"{seed}"),
                dataclasses.replace(config, size=size, seed=seed, token_budget=budget,
                                    eval_every=steps))
        for seed in range(k)
    ]  # fmt: skip


def timed(variant: str, runs: list[RunSpec], spec: EvalSpec, args) -> dict[str, Any]:
    k, cores = len(runs), args.cores
    gpu = GpuSampler(args.device)
    cpu0, t0 = cpu_children(), time.perf_counter()
    with gpu.sampling():
        if args.device == "cuda":
            group = 1 if variant == "single" else k
            train_runs(runs, spec, 1, lambda e: None, seed_group=group)
        elif variant == "single":
            one = [dataclasses.replace(r, config=dataclasses.replace(r.config, num_threads=1))
                   for r in runs]  # fmt: skip
            run_parallel(one, spec, min(cores, k), lambda e: None, seed_group=1)
        elif variant == "one":
            threaded = [dataclasses.replace(r, config=dataclasses.replace(r.config,
                        num_threads=cores)) for r in runs]  # fmt: skip
            run_parallel(threaded, spec, 1, lambda e: None, seed_group=k)
        else:  # split
            one = [dataclasses.replace(r, config=dataclasses.replace(r.config, num_threads=1))
                   for r in runs]  # fmt: skip
            train_runs(one, spec, cores, lambda e: None, seed_group=k)
    seconds = time.perf_counter() - t0
    cpu = cpu_children() - cpu0
    return {"variant": variant, "k": k, "seconds": seconds, "runs_per_hour": k / seconds * 3600,
            "cpu_per_run": cpu / k if args.device == "cpu" else None, **gpu.report()}  # fmt: skip


def steady(size: str, groups: list[int], device: str) -> None:
    """CPU (or CUDA) time per member-step of a single run's step and a group's."""
    import torch.nn.functional as F
    from torch.func import stack_module_state

    from training.batched import clip_per_member, grouped_forward
    from training.model import GPT, ModelConfig

    torch.set_num_threads(1)
    dev = torch.device(device)
    cfg = ModelConfig.from_size(size, vocab_size=257, block_size=SEQ_LEN)
    x = torch.randint(0, 257, (SEQS_PER_BATCH, SEQ_LEN), device=dev)
    clock = time.perf_counter if device == "cuda" else time.process_time

    def per_step(step, n: int) -> float:
        step()
        best = float("inf")
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            t = clock()
            for _ in range(n):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, (clock() - t) / n)
        return best

    model = GPT(cfg).to(dev)
    opt = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-3)

    def single() -> None:
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for k in groups:
        params, _ = stack_module_state([GPT(cfg).to(dev) for _ in range(k)])
        gopt = torch.optim.AdamW(list(params.values()), lr=1e-3)

        def group(k: int = k, params: dict = params, gopt: Any = gopt) -> None:
            logits = grouped_forward(model, params, x[:, :-1])
            losses = torch.stack([F.cross_entropy(logits[i].flatten(0, 1), x[:, 1:].flatten())
                                  for i in range(k)])  # fmt: skip
            losses.sum().backward()
            clip_per_member([p.grad for p in params.values() if p.grad is not None], 1.0)
            gopt.step()
            gopt.zero_grad(set_to_none=True)

        one = per_step(single, 5)
        many = per_step(group, max(2, 10 // k)) / k
        print(f"{size} K={k}: single {one * 1e3:.1f} ms/step, group {many * 1e3:.1f} ms "
              f"per member-step: {one / many:.2f}x", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["nano", "micro"])
    parser.add_argument("--groups", nargs="+", type=int, default=None)
    parser.add_argument("--steps", nargs="+", default=["nano=60", "micro=20"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--layouts", default="one,split")
    parser.add_argument("--record", action="store_true", help="append to RESULTS.md")
    parser.add_argument("--steady", action="store_true", help="the training step alone")
    args = parser.parse_args()
    groups = args.groups or ([1, 4, 8, 16] + ([64] if args.device == "cuda" else []))
    if args.steady:
        print(f"load average {os.getloadavg()}")
        for size in args.sizes:
            steady(size, groups, args.device)
        print(f"load average {os.getloadavg()}")
        return
    steps = {s.split("=")[0]: int(s.split("=")[1]) for s in args.steps}
    layouts = [x for x in args.layouts.split(",") if x]
    skill = MIX["cmp_skill"]()
    base = TrainConfig(device=args.device, checkpoint_every=10_000)
    load0, started = os.getloadavg(), datetime.datetime.now(datetime.UTC)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = EvalSpec(skills=[skill], heldout=_heldout(), n_probe=64, n_seen=64,
                        heldout_tokens=4096)  # fmt: skip
        for size in args.sizes:
            n = steps.get(size, 40)
            mixture = MIX["write_mixture"](
                work / f"mix-{size}", MIX["prose"](0), n_batches=n, seq_len=SEQ_LEN,
                seqs_per_batch=SEQS_PER_BATCH, skills={"cmp": (skill, MIX["per_batch"](2))},
            )  # fmt: skip
            for k in groups:
                variants = ["single"] + ([] if k == 1 else layouts)
                for variant in variants:
                    runs = runs_for(work / f"{size}-{k}-{variant}", mixture, size, k, n, base)
                    row = {"size": size, "steps": n, **timed(variant, runs, spec, args)}
                    rows.append(row)
                    print(_line(row), flush=True)
    table = _table(rows)
    print(table)
    print(f"load average before {load0}, after {os.getloadavg()}")
    if args.record:
        _record(table, args, load0, started)


def _heldout() -> list[str]:
    return list(itertools.islice(MIX["prose"](1, "heldout"), 20))


def _line(row: dict[str, Any]) -> str:
    cpu = "" if row["cpu_per_run"] is None else f", {row['cpu_per_run']:.1f} CPU s/run"
    gpu = ""
    if "gpu_memory" in row:
        util = "n/a" if row["gpu_util"] is None else f"{row['gpu_util']:.0f}%"
        gpu = f", GPU memory {row['gpu_memory']:.1%}, utilization {util}"
    return (f"{row['size']} K={row['k']} {row['variant']}: {row['seconds']:.1f} s, "
            f"{row['runs_per_hour']:.0f} runs/h{cpu}{gpu}")  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> str:
    singles = {(r["size"], r["k"]): r for r in rows if r["variant"] == "single"}
    out = ["| size | steps | K | variant | seconds | runs/h | x single | CPU s/run | GPU |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ref = singles[(r["size"], r["k"])]
        gain = r["runs_per_hour"] / ref["runs_per_hour"]
        cpu = "" if r["cpu_per_run"] is None else f"{r['cpu_per_run']:.1f}"
        gpu = ""
        if "gpu_memory" in r:
            util = "n/a" if r["gpu_util"] is None else f"{r['gpu_util']:.0f}%"
            gpu = f"mem {r['gpu_memory']:.1%}, util {util}"
        cells = [r["size"], r["steps"], r["k"], r["variant"], f"{r['seconds']:.1f}",
                 f"{r['runs_per_hour']:.0f}", f"{gain:.2f}x", cpu, gpu]  # fmt: skip
        out.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(out)


def _record(table: str, args, load0, started) -> None:
    text = (
        f"\n## bench_seed_group.py, {started:%Y-%m-%d %H:%M} UTC\n\n"
        f"`{' '.join(['bench_seed_group.py', *sys.argv[1:]])}` on {platform.node()} "
        f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, device {args.device}); load average "
        f"{load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (other sessions share these cores).\n\n"
        f"{table}\n"
    )
    with open(ROOT / "RESULTS.md", "a") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
