"""Mixture build throughput in a 32k BPE against bytes, side by side in one run.

    .venv/bin/python benchmarks/bench_tokenizer.py [--mb 40] [--vocab 32000] [--no-record]

Generates a corpus of about `--mb` MB of text (curation.synthetic_corpus, cached in
benchmarks/data/tokenizer/), trains a byte-level BPE of `--vocab` tokens on it with
`tokenizers` (curation.synthetic_tokenizer.train_bpe; nothing downloaded), scans the corpus
in each unit, then for each tokenizer times:

- encode only: `encode_batch_fast` over every document (the BPE's floor; bytes: UTF-8);
- build: plan + build_mixture without the audit (read, encode, pack, write shards);
- audit: the audit alone (decode, re-tokenize, match).

Rates are MB of mixture text (the text records written) per second of wall time, and per
CPU-second of this process (user + system, all its threads: steadier when other work
shares the cores). `tokenizers` encodes on every core (RAYON_NUM_THREADS, default all);
the rest of the build is one process.
Appends a dated section to RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import resource
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "tokenizer"
BATCH_TOKENS, SEQ_LEN = 65_536, 512
SKILL = {
    "id": "tp", "name": "token pairs", "detector": {"kind": "builtin"},
    "generator": {"family": "token_pair", "params": {"k": 100}},
}  # fmt: skip


def corpus(mb: float) -> Path:
    from curation.synthetic_corpus import generate_corpus

    folder = DATA / f"corpus-{mb:g}mb"
    if not (folder / "done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate_corpus(
            str(folder), int(mb * 1e6 / 1500), [], seed=0, format="jsonl.gz", n_files=4,
            mean_chars=1500,
        )  # fmt: skip
        (folder / "done").touch()
    return folder


def texts_of(folder: Path) -> list[str]:
    out = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            out += [json.loads(line)["text"] for line in f]
    return out


class Timer:
    """Wall and CPU seconds (this process, all threads) of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


def mixture_text_mb(out: Path) -> float:
    return sum(len(t.encode()) for t in texts_of(out)) / 1e6


def run(mb: float, vocab: int) -> dict:
    from curation.corpus import CorpusSource
    from curation.mixture import DosingPlan, audit_mixture, build_mixture, plan_mixture
    from curation.mixture.tokenizer import load_tokenizer
    from curation.scan import run_scan
    from curation.synthetic_tokenizer import train_bpe

    folder = corpus(mb)
    work = DATA / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    texts = texts_of(folder)
    total_mb = sum(len(t.encode()) for t in texts) / 1e6
    with Timer() as train:
        bpe = train_bpe(texts, vocab, str(work / "bpe"))
    train_s = train.wall
    source = CorpusSource(str(folder / "*.jsonl.gz"), "jsonl.gz")
    roots = [str(DATA)]
    rows = {}
    for name, spec in (
        ("bytes", {"kind": "bytes"}),
        (f"BPE {vocab // 1000}k", {"kind": "hf", "path": bpe}),
    ):
        tok = load_tokenizer(spec)
        with Timer() as encode:
            for lo in range(0, len(texts), 256):
                tok.encode_batch(texts[lo : lo + 256])
        report = run_scan(
            source, [SKILL], str(work / f"scan-{spec['kind']}"), allowed_roots=roots,
            batch_tokens=BATCH_TOKENS, plots=False, tokens=spec.get("path", "bytes"),
        )  # fmt: skip
        dosing = DosingPlan(
            batch_tokens=BATCH_TOKENS, seq_len=SEQ_LEN, tokenizer=spec,
            skills={"tp": {"target": {"per_batch": 4}}},
        )  # fmt: skip
        out = work / f"mix-{spec['kind']}"
        with Timer() as build:
            plan = plan_mixture(report, [SKILL], dosing)
            result = build_mixture(
                source, [SKILL], plan, str(out), allowed_roots=roots, audit=False
            )
        with Timer() as check:
            audit = audit_mixture(str(out), [SKILL], plots=False)
        text_mb = mixture_text_mb(out)
        rows[name] = {
            "encode_mb_s": total_mb / encode.wall,
            "encode_mb_cpu_s": total_mb / encode.cpu,
            "build_mb_s": text_mb / build.wall,
            "build_mb_cpu_s": text_mb / build.cpu,
            "audit_mb_s": text_mb / check.wall,
            "audit_mb_cpu_s": text_mb / check.cpu,
            "mixture_text_mb": text_mb,
            "tokens": result["manifest"]["tokens"],
            "token_dtype": result["manifest"]["token_dtype"],
            "audit_passed": audit["passed"],
            "build_s": build.wall,
        }
        print(name, json.dumps(rows[name]))
    return {"corpus_mb": total_mb, "train_s": train_s, "rows": rows}


def record(found: dict, args: argparse.Namespace) -> None:
    start, end = found["load_start"], os.getloadavg()
    lines = [
        "",
        f"## Mixture build in a {args.vocab // 1000}k BPE vs bytes (bench_tokenizer.py, "
        f"{datetime.date.today()})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, Python "
        f"{platform.python_version()}; load average (1/5/15 min) {start[0]:.2f} / {start[1]:.2f} "
        f"/ {start[2]:.2f} at the start, {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f} at the end: "
        "other sessions shared these cores, so the figures were taken under contention. Corpus: "
        f"{found['corpus_mb']:.1f} MB of generated prose (jsonl.gz, 4 files); BPE trained on it in "
        f"{found['train_s']:.0f} s; batch {BATCH_TOKENS:,} tokens, seq_len {SEQ_LEN}, one "
        "synthesized skill at 4 per batch. MB = mixture text MB (the text records written).",
        "",
        "MB/s: per second of wall time; in brackets, per CPU-second of the process.",
        "",
        "| tokenizer | encode only | build | audit | mixture tokens | dtype | audit |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in found["rows"].items():
        rates = " | ".join(
            f"{r[f'{k}_mb_s']:.2f} ({r[f'{k}_mb_cpu_s']:.2f})" for k in ("encode", "build", "audit")
        )
        verdict = "passed" if r["audit_passed"] else "FAILED"
        lines.append(f"| {name} | {rates} | {r['tokens']:,} | {r['token_dtype']} | {verdict} |")
    with open(ROOT / "RESULTS.md", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=40)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    load_start = os.getloadavg()
    found = {**run(args.mb, args.vocab), "load_start": load_start}
    if not args.no_record:
        record(found, args)


if __name__ == "__main__":
    main()
